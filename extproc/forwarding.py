"""Preparing one request for one provider: path, credentials, dialect headers, body, and how its
response comes back. Used for the single provider the request phase picks, and again for each
attempt of a fallback chain (see `attempts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from .actions import Reply
from .config import Provider
from .dialects import DIALECTS, anthropic, caching, count_tokens_estimate, translator_for
from .dialects.base import Dialect, Target
from .dialects.tools import clean_schema
from .observe import metrics
from .responses import ResponseTranslation

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_KEY_PREFIX = "sk-ant-"
# Headers only Anthropic understands; kept in a fallback chain's stash so a later Anthropic attempt
# gets them back after an OpenAI attempt removed them from the (shared) header map.
ANTHROPIC_ONLY_HEADERS = ("anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access")
STASHED_HEADERS = (*ANTHROPIC_ONLY_HEADERS, "accept-encoding")
# With `forward_headers`, these still reach the provider: the gateway needs them (credentials follow `auth`).
ALWAYS_FORWARDED = frozenset({"host", "content-type", "content-length", "accept", "accept-encoding", "te",
                              "authorization", "x-api-key", "anthropic-version", "x-request-id"})
ALWAYS_FORWARDED_PREFIXES = (":", "x-envoy-", "x-forwarded-", "x-lunaroute-")


def target_for(name: str, p: Provider) -> Target:
    """What a translator needs to know about a provider, from its config entry."""
    return Target(name=name, dialect=p.type, max_tokens_field=p.max_tokens_field,
                  max_tokens=p.max_tokens, max_tokens_by_model=tuple(p.max_tokens_by_model.items()),
                  reasoning=p.reasoning, reasoning_effort=p.reasoning_effort, prompt_caching=p.prompt_caching,
                  prompt_cache_key=p.prompt_cache_key)


@dataclass(slots=True)
class Outgoing:
    reply: Reply
    response: ResponseTranslation | None  # None: the response goes back untouched


def credentials(provider: Provider, client: Dialect, headers: dict[str, str], reply: Reply) -> None:
    """The provider's credentials. Envoy injects configured keys. The client's own credentials go on
    only to a provider of the client's dialect, or, with `auth: passthrough`, moved into the header
    the provider's dialect reads — except what belongs to Anthropic alone: an Anthropic client's
    `Authorization` (a Claude login's OAuth token) and `sk-ant-` keys never reach another vendor.
    Keys are never logged."""
    present = [h for h in ("x-api-key", "authorization") if h in headers or provider.keyed]
    foreign = provider.type != client
    if not provider.uses_client_key or (foreign and provider.auth != "passthrough"):
        reply.remove_headers += present
    elif client == "anthropic" and provider.type != "anthropic":
        # to an OpenAI-type provider: an x-api-key that is not Anthropic's, as a Bearer token; nothing else
        key = headers.get("x-api-key", "")
        if "x-api-key" in headers:
            reply.remove_headers.append("x-api-key")
        if key and not key.startswith(ANTHROPIC_KEY_PREFIX):
            reply.set_headers["authorization"] = "Bearer " + key
        elif "authorization" in headers:
            reply.remove_headers.append("authorization")
    elif provider.type == "anthropic" and client != "anthropic" and "x-api-key" not in headers:
        token = headers.get("authorization", "")
        if token[:7].lower() == "bearer ":
            reply.set_headers["x-api-key"] = token[7:]
            reply.remove_headers.append("authorization")


def dialect_headers(provider: Provider, translating: bool, headers: dict[str, str], reply: Reply,
                    stash: dict[str, str] | None = None) -> None:
    """Anthropic-only headers go only to Anthropic-type providers; a translated response must come in
    an encoding we can read; with `forward_headers` only the listed client headers go on. `stash`
    restores what an earlier attempt of a chain removed."""
    if provider.type == "anthropic":
        for name, value in (stash or {}).items():
            if name in ANTHROPIC_ONLY_HEADERS and headers.get(name) != value:
                reply.set_headers[name] = value
        if "anthropic-version" not in headers and "anthropic-version" not in reply.set_headers:
            reply.set_headers["anthropic-version"] = ANTHROPIC_VERSION
    else:
        reply.remove_headers += [h for h in ANTHROPIC_ONLY_HEADERS if h in headers]
    if translating:
        reply.set_headers["accept-encoding"] = "identity"
    elif stash and "accept-encoding" in stash and headers.get("accept-encoding") != stash["accept-encoding"]:
        reply.set_headers["accept-encoding"] = stash["accept-encoding"]
    if provider.forward_headers is not None:
        allowed = ALWAYS_FORWARDED.union(provider.forward_headers)
        reply.remove_headers += [h for h in headers if h not in allowed and h not in reply.set_headers
                                 and h not in reply.remove_headers and not h.startswith(ALWAYS_FORWARDED_PREFIXES)]


def clean_tool_schemas(provider: Provider, doc: dict) -> bool:
    """Drop the provider's `tool_schema.drop_keys` from the tool schemas of a body in its dialect;
    True when anything changed."""
    drop = frozenset(provider.tool_schema.drop_keys)
    changed = False
    for holder, key in DIALECTS[provider.type].tool_schemas(doc) if drop else ():
        cleaned = clean_schema(holder[key], drop)
        if cleaned != holder[key]:
            holder[key] = cleaned
            changed = True
    return changed


def for_provider(name: str, provider: Provider, client: Dialect, path: str, query: str,
                 headers: dict[str, str], doc: dict, changed: bool,
                 stash: dict[str, str] | None = None) -> Outgoing:
    """Rewrite a parsed client request (`doc`, already marker-stripped and with its model set) for
    `provider`: translate when the dialects differ, set `:path`, credentials, dialect headers, and the
    body with its `content-length` when it changed."""
    translating = provider.type != client
    translator = translator_for(client, provider.type)
    target = target_for(name, provider)
    stream_options = {
        # message_start needs input tokens before the provider reports any: estimate, for streams only
        "input_tokens_estimate": count_tokens_estimate(doc)
        if client == "anthropic" and translating and doc.get("stream") else 0,
        "include_usage": bool(doc["stream_options"].get("include_usage"))
        if isinstance(doc.get("stream_options"), dict) else False,
        # calls of tools the provider knows by another name (shortened, custom, namespaced) go back as
        # the tools the client declared
        "client_tools": DIALECTS[client].client_tools(doc)  # type: ignore[misc]
        if translating and DIALECTS[client].client_tools else None,
    }
    if translating:
        client_doc, doc = doc, translator.request_body(doc, target)
        caching.prepare(doc, client_doc, client, target, headers)
        path = translator.request_path(path)
        changed = True
        metrics.TRANSLATIONS.labels(client, provider.type).inc()
    changed = clean_tool_schemas(provider, doc) or changed
    if provider.type == "anthropic":
        changed = anthropic.fit_history(doc) or changed
    reply = Reply()
    # The client dialect's query (Claude Code's `?beta=true`) means nothing to the other dialect.
    reply.set_headers[":path"] = provider.upstream_path(path) + ("" if translating else query)
    credentials(provider, client, headers, reply)
    dialect_headers(provider, translating, headers, reply, stash)
    if changed:
        reply.body = orjson.dumps(doc)
        reply.set_headers["content-length"] = str(len(reply.body))
    response = ResponseTranslation.for_request(translator, client, provider.type, target, stream_options)
    return Outgoing(reply, response)
