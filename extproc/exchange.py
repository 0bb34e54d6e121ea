"""One HTTP exchange walking through Envoy's phases: the gateway's request pipeline.

Sans-IO: each `on_*` method takes what Envoy sent for that phase (header dicts, body bytes) and
returns a `Reply`; the gRPC servicer only moves messages. `Gateway` holds what is built once per
worker (config, router); an `Exchange` holds one request's state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson

from . import paths
from .actions import Reply
from .config import Config, Provider
from .dialects import count_tokens_estimate, translator_for
from .dialects.base import Dialect, Target, TranslationError
from .envoy_config import CLUSTER_HEADER, cluster_name
from .local_replies import count_tokens_reply, error_reply, models_reply
from .markers import take_marker
from .observe import metrics
from .paths import Kind
from .responses import ResponseTranslation
from .routing import Router, RoutingError, pop_preferences, request_model

log = logging.getLogger("lunaroute")

ANTHROPIC_VERSION = "2023-06-01"
_ANTHROPIC_ONLY_HEADERS = ("anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access")


def target_for(name: str, p: Provider) -> Target:
    """What a translator needs to know about a provider, from its config entry."""
    return Target(name=name, dialect=p.type, model=p.model, max_tokens_field=p.max_tokens_field,
                  max_tokens=p.max_tokens, reasoning=p.reasoning, reasoning_effort=p.reasoning_effort)


class Gateway:
    """Everything a worker builds once from the config."""

    def __init__(self, cfg: Config, healthy: callable | None = None) -> None:  # type: ignore[valid-type]
        self.cfg = cfg
        self.router = Router(cfg)
        self.provider_names = frozenset(cfg.providers)
        self._healthy = healthy or (lambda: True)

    def ready(self) -> bool:
        return bool(self._healthy())

    def provider(self, name: str) -> Provider:
        return self.cfg.providers[name]


@dataclass(slots=True)
class _Request:
    method: str = ""
    path: str = ""
    query: str = ""
    kind: Kind = Kind.BYPASS
    client: Dialect = "anthropic"
    headers: dict[str, str] | None = None


class Exchange:
    """One request and its response. Created per ext_proc stream."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.req = _Request()
        self.provider_name = ""
        self.model = ""
        self.response: ResponseTranslation | None = None
        self.status = 0

    # -- request ---------------------------------------------------------------------------------

    def on_request_headers(self, headers: dict[str, str], end_of_stream: bool) -> Reply:
        req = self.req
        req.method = headers.get(":method", "GET")
        req.path, req.query = paths.split_path(headers.get(":path", "/"))
        req.kind = paths.classify(req.method, req.path)
        req.client = paths.client_dialect(req.kind, headers)
        req.headers = headers
        kind = req.kind
        if kind is Kind.BYPASS:
            # Only in meshes, where Envoy's routes are not ours: let it through, skip everything else.
            return Reply(request_body_mode="NONE", response_header_mode="SKIP", response_body_mode="NONE")
        if kind is Kind.HEALTHZ or kind is Kind.ROOT:
            return self._answer(Reply.reply_now(200, b'{"status":"ok"}'))
        if kind is Kind.READYZ:
            if self.gw.ready():
                return self._answer(Reply.reply_now(200, b'{"status":"ready"}'))
            return self._answer(Reply.reply_now(503, b'{"status":"draining"}'))
        if kind is Kind.METRICS:
            body, ctype = metrics.exposition()
            return self._answer(Reply.reply_now(200, body, content_type=ctype))
        if kind is Kind.MODELS:
            return self._models()
        if kind is Kind.MESSAGES_OTHER:
            return self._anthropic_only()
        if end_of_stream:
            return self._error(400, "the request has no body; send a JSON object", kind="bad_request")
        return Reply()

    def on_request_body(self, body: bytes) -> Reply:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._error(400, f"the request body is not valid JSON: {exc}", kind="bad_json")
        if not isinstance(doc, dict):
            return self._error(400, "the request body must be a JSON object", kind="bad_json")
        try:
            return self._route_body(doc, body)
        except RoutingError as exc:
            return self._error(exc.status, exc.message, param=exc.param, kind="bad_request")
        except TranslationError as exc:
            return self._error(exc.status, exc.message, param=exc.param, kind="unsupported")

    def _route_body(self, doc: dict, raw: bytes) -> Reply:
        req = self.req
        headers = req.headers or {}
        gw = self.gw
        marker, changed = take_marker(doc, req.client, gw.provider_names)
        if marker.kind == "unknown":
            metrics.UNKNOWN_MARKERS.inc()
            log.warning("unknown provider in marker [LUNAROUTE:%s]; routing by default", marker.name)
        prefs_value, popped = pop_preferences(doc)
        changed = changed or popped
        prefs = gw.router.parse_preferences(prefs_value, headers.get("x-provider"))
        model = request_model(doc.get("model"), headers.get("x-model"))
        decision = gw.router.decide(marker, prefs, model, req.path)
        name = decision.provider
        provider = gw.provider(name)
        self.provider_name = name
        metrics.ROUTING.labels(name, decision.reason).inc()
        model = decision.model_override or model
        if model is not None and doc.get("model") != model:
            doc["model"] = model
            changed = True
        self.model = str(doc.get("model", ""))
        metrics.REQUESTS.labels(req.kind.value, name).inc()
        log.log(logging.DEBUG if decision.reason == "default" else logging.INFO,
                "route %s %s -> lunaroute:%s (%s)%s", req.method, req.path, name, decision.reason,
                f" model_override:{decision.model_override}" if decision.model_override else "")

        translator = translator_for(req.client, provider.type)
        if req.kind is Kind.COUNT_TOKENS and provider.type != "anthropic":
            return self._answer(count_tokens_reply(doc))
        path = req.path
        target = target_for(name, provider)
        stream_options = {
            "input_tokens_estimate": count_tokens_estimate(doc) if req.client == "anthropic" else 0,
            "include_usage": bool((doc.get("stream_options") or {}).get("include_usage"))
            if isinstance(doc.get("stream_options"), dict) else False,
        }
        if provider.type != req.client:
            doc = translator.request_body(doc, target)
            path = translator.request_path(path)
            changed = True
            metrics.TRANSLATIONS.labels(req.client, provider.type).inc()
        self.response = ResponseTranslation.for_request(translator, req.client, provider.type, target,
                                                        stream_options)

        reply = Reply(clear_route_cache=True)
        reply.set_headers[CLUSTER_HEADER] = cluster_name(name)
        # The client dialect's query (Claude Code's `?beta=true`) means nothing to the other dialect.
        query = req.query if provider.type == req.client else ""
        reply.set_headers[":path"] = provider.upstream_path(path) + query
        self._auth_headers(provider, headers, reply)
        if provider.type != req.client:
            reply.set_headers["accept-encoding"] = "identity"
        if changed:
            reply.body = orjson.dumps(doc)
            reply.set_headers["content-length"] = str(len(reply.body))
        if self.response is None:
            # Nothing to translate: the response goes to the client without another trip to Python.
            reply.response_header_mode = "SKIP"
        return reply

    def _auth_headers(self, provider: Provider, headers: dict[str, str], reply: Reply) -> None:
        """Credentials and dialect headers for the chosen provider; keys are never logged."""
        if not provider.passthrough:
            # Envoy's credential injector adds the provider's key on the way out.
            reply.remove_headers += ["x-api-key", "authorization"]
        elif provider.type == "openai" and "x-api-key" in headers and "authorization" not in headers:
            reply.set_headers["authorization"] = "Bearer " + headers["x-api-key"]
            reply.remove_headers.append("x-api-key")
        elif provider.type == "anthropic" and self.req.client == "openai" and "x-api-key" not in headers:
            token = headers.get("authorization", "")
            if token[:7].lower() == "bearer ":
                reply.set_headers["x-api-key"] = token[7:]
                reply.remove_headers.append("authorization")
        if provider.type == "anthropic":
            if "anthropic-version" not in headers:
                reply.set_headers["anthropic-version"] = ANTHROPIC_VERSION
        else:
            reply.remove_headers += [h for h in _ANTHROPIC_ONLY_HEADERS if h in headers]

    # -- local answers ---------------------------------------------------------------------------

    def _models(self) -> Reply:
        """/v1/models: the default provider's own list when it speaks the client's dialect and no
        models are configured; otherwise the configured models, in the client's dialect."""
        cfg = self.gw.cfg
        default = cfg.providers[cfg.default_provider]
        configured = any(p.models or p.model for p in cfg.providers.values())
        if default.type == self.req.client and not configured:
            return self._forward_as_is(cfg.default_provider)
        return self._answer(models_reply(self.req.client, cfg, self.req.path))

    def _anthropic_only(self) -> Reply:
        cfg = self.gw.cfg
        names = [cfg.default_provider] + list(cfg.providers)
        for name in names:
            if cfg.providers[name].type == "anthropic":
                return self._forward_as_is(name)
        return self._error(404, f"{self.req.path} is an Anthropic API and no Anthropic provider is configured",
                           kind="not_found")

    def _forward_as_is(self, name: str) -> Reply:
        provider = self.gw.provider(name)
        self.provider_name = name
        metrics.REQUESTS.labels(self.req.kind.value, name).inc()
        reply = Reply(clear_route_cache=True)
        reply.set_headers[CLUSTER_HEADER] = cluster_name(name)
        reply.set_headers[":path"] = provider.upstream_path(self.req.path) + self.req.query
        self._auth_headers(provider, self.req.headers or {}, reply)
        return reply

    def _error(self, status: int, message: str, param: str | None = None, kind: str = "bad_request") -> Reply:
        metrics.CLIENT_ERRORS.labels(kind).inc()
        return self._answer(error_reply(self.req.client, status, message, param))

    def _answer(self, reply: Reply) -> Reply:
        assert reply.immediate is not None
        self.status = reply.immediate.status
        route, provider = self.req.kind.value, self.provider_name or "gateway"
        if not self.provider_name:
            metrics.REQUESTS.labels(route, provider).inc()
        metrics.RESPONSES.labels(route, provider, str(self.status)).inc()
        return reply

    # -- response --------------------------------------------------------------------------------

    def on_response_headers(self, headers: dict[str, str]) -> Reply:
        try:
            self.status = int(headers.get(":status", "0"))
        except ValueError:
            self.status = 0
        metrics.RESPONSES.labels(self.req.kind.value, self.provider_name or "gateway", str(self.status)).inc()
        return self.response.on_headers(self.status, headers) if self.response else Reply()

    def on_response_body(self, chunk: bytes, end_of_stream: bool) -> Reply:
        if self.response is None:
            return Reply()
        reply = self.response.on_body(chunk, end_of_stream)
        if end_of_stream and self.response.usage:
            usage = self.response.usage
            metrics.TOKENS.labels(self.provider_name, "input").inc(usage.get("input", 0))
            metrics.TOKENS.labels(self.provider_name, "output").inc(usage.get("output", 0))
        return reply

    def internal_error(self, phase: str) -> Reply:
        """Something in the pipeline broke: answer in the client's dialect, keep serving."""
        log.exception("internal error in phase %s for %s %s", phase, self.req.method, self.req.path)
        return self._error(500, "the gateway failed to process this request", kind="internal")
