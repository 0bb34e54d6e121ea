"""The headers phase's decision, pure: answer here, forward as sent, or wait for the body.

Requests that the gateway does not route by their body are decided on their headers alone: the
gateway's own endpoints, the models list, the APIs only a provider of the client's dialect has
(batches, stored responses), OpenAI's stored completions, and — behind the gateway's own Envoy — paths
nobody intercepts (the bypass provider's). `admit` returns what to do; `exchange` does it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import paths
from .actions import Reply
from .answers import advertised_models, models_body_for, models_reply
from .endpoints import READ, refusal
from .gateway import Gateway
from .observe import metrics
from .paths import Kind
from .plan import Refused, RequestLine, refuse_out_of_list
from .responses import ModelListMerge

# Answered by the gateway itself, behind its own Envoy only.
GATEWAY_ENDPOINTS = frozenset({Kind.HEALTHZ, Kind.READYZ, Kind.METRICS, Kind.ROOT})


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the request as it is to `provider`; `merge` reads the response (the models list)."""

    provider: str
    merge: ModelListMerge | None = None


@dataclass(frozen=True, slots=True)
class PassThrough:
    """A mesh's path that is not ours: let it through, untouched but for our internal headers."""


@dataclass(frozen=True, slots=True)
class ReadBody:
    """Routed by its body: wait for it."""


Admission = Reply | Forward | PassThrough | ReadBody


def admit(gw: Gateway, line: RequestLine, sealed: bool) -> Admission:
    """What to do with a request, from its headers. Raises `Refused` for what a key or the config
    does not allow (the caller answers it in the client's dialect)."""
    kind = line.kind
    if not sealed and gw.cfg.access.keys:
        raise Refused("gateway keys are configured but cannot be checked here; use the gateway's own Envoy, or "
                      "the mesh's authentication", None, 503, "access")
    if kind is Kind.BYPASS or (not sealed and kind in GATEWAY_ENDPOINTS):
        # Behind our Envoy a path its routes do not intercept is the bypass provider's; in a mesh the
        # path belongs to the app behind it.
        return bypass(gw, line) if sealed else PassThrough()
    if kind is Kind.HEALTHZ or kind is Kind.ROOT:
        return Reply.reply_now(200, b'{"status":"ok"}')
    if kind is Kind.READYZ:
        return Reply.reply_now(200, b'{"status":"ready"}') if gw.ready() else Reply.reply_now(
            503, b'{"status":"draining"}')
    if kind is Kind.METRICS:
        body, ctype = metrics.exposition()
        return Reply.reply_now(200, body, content_type=ctype)
    if kind is Kind.NOT_SERVED:  # Envoy's routes answer these; a mesh's proxies send them here
        status, message = refusal(line.method, line.path) or (404, f"{line.path} is not served")
        raise Refused(message, None, status, "not_found")
    if kind is Kind.MODELS:
        return models(gw, line)
    if kind in paths.NATIVE_KINDS:
        return native_only(gw, line)
    if kind is Kind.CHAT_OTHER:
        return stored_completions(gw, line)
    return ReadBody()


def models(gw: Gateway, line: RequestLine) -> Reply | Forward:
    """/v1/models: when the default provider speaks the client's dialect, its own list with the other
    providers' configured models added; otherwise the configured models, answered here. (Only reads of
    the list or of one model get here: the endpoint table makes the rest `NOT_SERVED`.)"""
    cfg = gw.cfg
    one = line.path.removeprefix("/v1/models/") if line.path.startswith("/v1/models/") else None
    ids = advertised_models(cfg)
    allow = line.allow
    if allow is not None:
        ids = [m for m in ids if allow.allows_model(m)]
    if (cfg.providers[cfg.default_provider].type != line.client or (one is not None and one in ids)
            or (allow is not None and not allow.allows_provider(cfg.default_provider))):
        return models_reply(line.client, ids, line.path)
    merge = ModelListMerge(models_body_for(line.client), ids) if one is None and ids else None
    return forward(gw, line, cfg.default_provider, merge)


def native_only(gw: Gateway, line: RequestLine) -> Forward:
    """An API only a provider of the client's own dialect has: the first such provider that serves the
    path (its `endpoint_prefixes`), as sent."""
    cfg = gw.cfg
    for name in [cfg.default_provider, *cfg.providers]:
        if cfg.providers[name].type == line.client and gw.router.eligible(name, line.path):
            return forward(gw, line, name)
    raise Refused(f"{line.path} is an API of the {line.client} dialect and no provider of type {line.client} is "
                  "configured", None, 404, "not_found")


def stored_completions(gw: Gateway, line: RequestLine) -> Forward:
    """/v1/chat/completions/{id}…: OpenAI's stored completions, kept by the provider that answered.
    To the default provider, else the bypass provider, when it speaks OpenAI's dialect; never to a
    provider the config did not open to every path."""
    cfg = gw.cfg
    for name in (cfg.default_provider, cfg.bypass_provider if cfg.bypass.enabled else None):
        if name is not None and cfg.providers[name].type == "openai" and gw.router.eligible(name, line.path):
            return forward(gw, line, name)
    raise Refused(f"{line.path} is served only when the default or the bypass provider is OpenAI-type", None, 404,
                  "not_found")


def bypass(gw: Gateway, line: RequestLine) -> Forward:
    if not gw.cfg.bypass.enabled:
        raise Refused("This path is not served by the gateway (bypass is disabled).", None, 404, "not_found")
    return forward(gw, line, gw.cfg.bypass_provider)


def forward(gw: Gateway, line: RequestLine, name: str, merge: ModelListMerge | None = None) -> Forward:
    """Forward as sent to `name`, if the key may. Its model is not read and its usage not metered, so a
    key limited to some models may use only the models list, and a key or provider under a budget only
    reads (GET/HEAD)."""
    refuse_out_of_list(line, name, None, check_model=False)
    allow = line.allow
    if allow is not None and allow.models and line.kind is not Kind.MODELS:
        raise Refused(f"the gateway key {line.key!r} is limited to some models; {line.path} is not a model API it "
                      "may use", None, 403, "forbidden")
    budgets = gw.budgets
    if line.method not in READ and budgets is not None and budgets.concerns(line.key or None, name):
        raise Refused(f"{line.method} {line.path} goes to provider {name!r} unmetered, and a budget applies to this "
                      "request; use the Messages, Chat Completions or Responses API, or remove the budget",
                      None, 403, "budget")
    return Forward(name, merge)
