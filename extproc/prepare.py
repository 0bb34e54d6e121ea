"""Preparing one request for one provider: path, credentials, dialect headers, body, and how its
response comes back. The one place that knows it: the request phase's single provider, each attempt
of a fallback chain (`attempts`), the APIs forwarded as sent, and — through `as_sent_edits` — the fast
path's routes, which Envoy renders from the same edits (`envoy_config`), so the fast path cannot drift
from what Python would send.

Edits are declarative (`HeaderEdits`): what to set, what to add when absent, what to remove. Python
applies them to its reply; the renderer turns the header-independent ones into route config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
class HeaderEdits:
    """What a provider needs changed in a request's headers: `path` (None: as it is), headers to set,
    to add when absent, to remove (whether present or not: removing an absent header changes nothing)."""

    path: str | None = None
    set: dict[str, str] = field(default_factory=dict)
    set_if_absent: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)

    def into(self, headers: dict[str, str], reply: Reply) -> Reply:
        """Apply to `reply` for a request carrying `headers`."""
        if self.path is not None:
            reply.set_headers[":path"] = self.path
        reply.set_headers.update(self.set)
        reply.set_headers.update({k: v for k, v in self.set_if_absent.items() if k not in headers})
        reply.remove_headers += [h for h in self.remove if h not in reply.set_headers]
        return reply


def as_sent_edits(provider: Provider, path: str, query: str) -> HeaderEdits:
    """A request in the provider's own dialect, going as the client sent it: the provider's path
    prefix, no client credentials unless the provider uses them (Envoy injects a configured key), and
    Anthropic's version header for Anthropic, none of Anthropic's headers for others. Independent of
    the request's headers, so Envoy's fast-path routes are rendered from it."""
    edits = HeaderEdits(path=provider.upstream_path(path) + query)
    if not provider.uses_client_key:
        edits.remove += ["x-api-key", "authorization"]
    if provider.type == "anthropic":
        edits.set_if_absent["anthropic-version"] = ANTHROPIC_VERSION
    else:
        edits.remove += list(ANTHROPIC_ONLY_HEADERS)
    return edits


@dataclass(slots=True)
class Outgoing:
    reply: Reply
    response: ResponseTranslation | None  # None: the response goes back untouched


def _cross_dialect_credentials(provider: Provider, client: Dialect, headers: dict[str, str], reply: Reply) -> None:
    """The client's own credentials to a provider of another dialect: only with `auth: passthrough`,
    moved into the header that dialect reads — except what belongs to Anthropic alone: an Anthropic
    client's `Authorization` (a Claude login's OAuth token) and `sk-ant-` keys never reach another
    vendor. Envoy injects configured keys. Keys are never logged."""
    present = [h for h in ("x-api-key", "authorization") if h in headers or provider.keyed]
    if not provider.uses_client_key or provider.auth != "passthrough":
        reply.remove_headers += present
    elif client == "anthropic":
        # to an OpenAI-type provider: an x-api-key that is not Anthropic's, as a Bearer token; nothing else
        key = headers.get("x-api-key", "")
        if "x-api-key" in headers:
            reply.remove_headers.append("x-api-key")
        if key and not key.startswith(ANTHROPIC_KEY_PREFIX):
            reply.set_headers["authorization"] = "Bearer " + key
        elif "authorization" in headers:
            reply.remove_headers.append("authorization")
    elif provider.type == "anthropic" and "x-api-key" not in headers:
        token = headers.get("authorization", "")
        if token[:7].lower() == "bearer ":
            reply.set_headers["x-api-key"] = token[7:]
            reply.remove_headers.append("authorization")


def _header_dependent(provider: Provider, translating: bool, headers: dict[str, str], reply: Reply,
                      stash: dict[str, str] | None) -> None:
    """What depends on the request's own headers: `stash` restores what an earlier attempt of a chain
    removed (Envoy shares one header map between attempts); a translated response must come in an
    encoding we can read; with `forward_headers` only the listed client headers go on."""
    if provider.type == "anthropic":
        for name, value in (stash or {}).items():
            if name in ANTHROPIC_ONLY_HEADERS and headers.get(name) != value:
                reply.set_headers[name] = value
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


def prepare(name: str, provider: Provider, client: Dialect, path: str, query: str, headers: dict[str, str],
            doc: dict | None = None, changed: bool = False, stash: dict[str, str] | None = None) -> Outgoing:
    """The request for `provider`. `doc` None: forwarded as sent (the body is not read). Else `doc` is
    the parsed client request, already marker-stripped and with its model set: translated when the
    dialects differ, its tool schemas cleaned and its history fitted for the provider; the body is
    re-serialised (with its `content-length`) when anything changed."""
    translating = doc is not None and provider.type != client
    reply = Reply()
    if not translating:
        as_sent_edits(provider, path, query).into(headers, reply)
        _header_dependent(provider, False, headers, reply, stash)
        if doc is None:
            return Outgoing(reply, None)
        changed = _fit(provider, doc) or changed
        if changed:
            _set_body(reply, doc)
        return Outgoing(reply, None)
    assert doc is not None
    translator = translator_for(client, provider.type)
    target = target_for(name, provider)
    stream_options = {
        # message_start needs input tokens before the provider reports any: estimate, for streams only
        "input_tokens_estimate": count_tokens_estimate(doc) if client == "anthropic" and doc.get("stream") else 0,
        "include_usage": bool(doc["stream_options"].get("include_usage"))
        if isinstance(doc.get("stream_options"), dict) else False,
        # calls of tools the provider knows by another name (shortened, custom, namespaced) go back as
        # the tools the client declared
        "client_tools": DIALECTS[client].client_tools(doc)  # type: ignore[misc]
        if DIALECTS[client].client_tools else None,
    }
    client_doc, doc = doc, translator.request_body(doc, target)
    caching.prepare(doc, client_doc, client, target, headers)
    metrics.TRANSLATIONS.labels(client, provider.type).inc()
    _fit(provider, doc)
    # The client dialect's query (Claude Code's `?beta=true`) means nothing to the other dialect.
    reply.set_headers[":path"] = provider.upstream_path(translator.request_path(path))
    _cross_dialect_credentials(provider, client, headers, reply)
    if provider.type == "anthropic":
        if "anthropic-version" not in headers:
            reply.set_headers["anthropic-version"] = ANTHROPIC_VERSION
    else:
        reply.remove_headers += [h for h in ANTHROPIC_ONLY_HEADERS if h in headers]
    _header_dependent(provider, True, headers, reply, stash)
    _set_body(reply, doc)
    return Outgoing(reply, ResponseTranslation(translator, target, stream_options))


def _fit(provider: Provider, doc: dict) -> bool:
    """What the provider itself needs of a body in its dialect; True when anything changed."""
    changed = clean_tool_schemas(provider, doc)
    if provider.type == "anthropic":
        changed = anthropic.fit_history(doc) or changed
    return changed


def _set_body(reply: Reply, doc: dict) -> None:
    reply.body = orjson.dumps(doc)
    reply.set_headers["content-length"] = str(len(reply.body))
