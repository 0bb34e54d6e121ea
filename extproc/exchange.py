"""One HTTP exchange walking through Envoy's phases: the gateway's request pipeline.

Sans-IO: each `on_*` method takes what Envoy sent for that phase (header dicts, body bytes) and
returns a `Reply`; the gRPC servicer only moves messages. `Gateway` holds what is built once per
worker (config, router); an `Exchange` holds one request's state.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from time import perf_counter

import orjson

from . import paths
from .actions import Reply
from .attempts import Chain, encode_chain, usable_chain
from .config import Config, Provider
from .dialects.base import Dialect, TranslationError
from .encoding import SUPPORTED, CorruptBody, DecodedTooLarge, decode_body
from .envoy_config import (
    ATTEMPTS_HEADER,
    CHAIN_HEADER,
    CLIENT_HEADER,
    CLUSTER_HEADER,
    FALLBACK_HEADER,
    INTERNAL_PREFIX,
    SCOPE_HEADER,
    cluster_name,
)
from .errors import TOO_DEEP, ClientError, nested_too_deeply
from .forwarding import STASHED_HEADERS, credentials, dialect_headers, for_provider
from .local_replies import advertised_models, count_tokens_reply, error_reply, models_body_for, models_reply
from .markers import NO_MARKER, PREFIX, take_marker
from .observe import metrics
from .observe.budgets import RESERVED_OUTPUT_TOKENS, Budgets, Refusal, Reservation
from .observe.pii import Redactor
from .observe.pricing import Price, PriceTable
from .observe.recording import Draft, anonymise_ip, session_of
from .observe.sessions import RecordWriter
from .paths import Kind
from .responses import ModelListMerge, ResponseTranslation, UsageMeter, count_usage, status_of
from .routing import Observed, Router, pop_preferences, request_model

log = logging.getLogger("lunaroute")
MARKER_BYTES = PREFIX.encode()


PEER_HEADER = "x-lunaroute-peer"  # the client's address, written by the gate when recording


# Answered by the gateway itself, behind its own Envoy only.
_GATEWAY_ENDPOINTS = frozenset({Kind.HEALTHZ, Kind.READYZ, Kind.METRICS, Kind.ROOT})


class Gateway:
    """Everything a worker builds once from the config."""

    # One untranslated response in this many still comes through Python, to measure its latency for
    # `sort: latency` (translated responses are always measured).
    SAMPLE_EVERY = 16

    def __init__(self, cfg: Config, healthy: Callable[[], bool] | None = None) -> None:
        self.cfg = cfg
        self.observed = Observed()
        self.router = Router(cfg, self.observed)
        self.provider_names = frozenset(cfg.providers)
        rec, pii = cfg.recording, cfg.pii
        self.redactor = Redactor(pii.detect, pii.mode, pii.secret(dict(os.environ))) if pii.detect and (
            rec.enabled or pii.redact_requests) else None
        self.recorder = RecordWriter(rec.dir, rec.queue_size, rec.max_age_days, rec.max_bytes,
                                     self.redactor.redact if self.redactor else None,
                                     rec.max_sessions) if rec.enabled else None
        self.prices = PriceTable(
            {glob: Price(p.input_per_mtok, p.output_per_mtok, p.cache_read_per_mtok, p.cache_write_per_mtok)
             for glob, p in cfg.pricing.items()},
            {name: Price(p.pricing.input_per_mtok, p.pricing.output_per_mtok)
             for name, p in cfg.providers.items() if p.pricing is not None})
        self.budgets = Budgets(cfg.budgets) if cfg.budgets.all_limits() else None
        self._healthy = healthy or (lambda: True)
        self._ticks = 0

    def sample(self) -> bool:
        self._ticks += 1
        return self._ticks % self.SAMPLE_EVERY == 0

    def ready(self) -> bool:
        return bool(self._healthy())

    def close(self) -> None:
        """Flush what is queued for the session store (SIGTERM)."""
        if self.recorder is not None:
            self.recorder.close()
        if self.budgets is not None:
            self.budgets.flush()

    def provider(self, name: str) -> Provider:
        return self.cfg.providers[name]


@dataclass(frozen=True, slots=True)
class Scope:
    """What a gateway key may use (its allow-lists; empty: anything). The gate wrote it."""

    providers: frozenset[str] = frozenset()
    models: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str | None) -> Scope | None:
        if not value:
            return None
        raw = orjson.loads(value)
        return cls(frozenset(raw.get("providers") or ()), tuple(raw.get("models") or ()))

    def allows_provider(self, name: str) -> bool:
        return not self.providers or name in self.providers

    def allows_model(self, model: str | None) -> bool:
        return not self.models or (model is not None and any(fnmatchcase(model, g) for g in self.models))


@dataclass(slots=True)
class _Request:
    method: str = ""
    path: str = ""
    query: str = ""
    kind: Kind = Kind.BYPASS
    client: Dialect = "anthropic"
    headers: dict[str, str] | None = None
    key: str = ""  # the gateway key's name ("" without keys)
    scope: Scope | None = None
    encoded: bool = False  # the client compressed the body (content-encoding); Python reads it decoded


class Exchange:
    """One request and its response. Created per ext_proc stream.

    `sealed`: the stream comes from the gateway's own Envoy, whose first filter (the gate) removed
    every client-sent internal header and checked the gateway key; `x-lunaroute-client` and
    `x-lunaroute-scope` are then the gate's. In a mesh nothing is sealed: internal headers are dropped
    here, and the gateway's own endpoints (/readyz, /metrics) belong to the app behind the mesh."""

    def __init__(self, gw: Gateway, sealed: bool = False) -> None:
        self.gw = gw
        self.sealed = sealed
        self.req = _Request()
        self.provider_name = ""
        self.response: ResponseTranslation | ModelListMerge | UsageMeter | None = None
        self.status = 0
        self.started = 0.0  # when the request left for the provider
        self.ttfb = -1.0
        self.draft: Draft | None = None  # this request's session record, when recording
        self.sent_model: str | None = None
        self.busy = 0.0  # seconds the gateway itself spent on this exchange (its overhead)
        self.redacted = False  # PII was taken out of the request before it went on (pii.redact_requests)
        self.reservation: Reservation | None = None  # budgets this request draws on; the server reserves
        self.first_byte = 0.0  # when the response body's first bytes came
        self.finished = False

    # -- request ---------------------------------------------------------------------------------

    def on_request_headers(self, headers: dict[str, str], end_of_stream: bool) -> Reply:
        req = self.req
        req.method = headers.get(":method", "GET")
        req.path, req.query = paths.split_path(headers.get(":path", "/"))
        req.kind = paths.classify(req.method, req.path)
        req.client = paths.client_dialect(req.kind, headers)
        req.headers = headers
        kind = req.kind
        if self.sealed:
            req.key = headers.get(CLIENT_HEADER, "")
            req.scope = Scope.parse(headers.get(SCOPE_HEADER))
        elif self.gw.cfg.access.keys:
            log.error("access.keys is set but this request did not pass the gateway's gate (a mesh?); refused")
            return self._error(503, "gateway keys are configured but cannot be checked here; use the "
                                    "gateway's own Envoy, or the mesh's authentication", kind="access")
        if kind is Kind.BYPASS or (not self.sealed and kind in _GATEWAY_ENDPOINTS):
            if self.sealed:  # a path the gateway's own routes do not intercept: the bypass provider's
                return self._bypass()
            # A mesh: the path belongs to the app behind it; let it through, skip everything else.
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
        if kind in paths.NATIVE_KINDS:
            return self._native_only()
        if kind is Kind.CHAT_OTHER:
            return self._stored_completions()
        if end_of_stream:
            return self._error(400, "the request has no body; send a JSON object", kind="bad_request")
        return Reply()

    def on_request_body(self, body: bytes) -> Reply:
        if self.req.kind not in paths.BODY_KINDS:
            return Reply()  # answered or forwarded in the headers phase; the body is not ours to route
        began = perf_counter()
        encoding = (self.req.headers or {}).get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            decoded = self._decoded(body, encoding)
            if isinstance(decoded, Reply):
                return decoded
            body, self.req.encoded = decoded, True
        reply = self._on_request_body(body)
        if reply.immediate is None:
            if self.req.encoded and reply.body is not None:
                reply.remove_headers.append("content-encoding")  # the new body goes uncompressed
            self._scrub(reply)
            if self.draft is not None and reply.body is not None:
                self.draft.provider_request = reply.body
        self.busy += perf_counter() - began
        return reply

    def _decoded(self, body: bytes, encoding: str) -> bytes | Reply:
        """A compressed request body, decoded up to the request size cap; an encoding the gateway cannot
        read is a 415, a bomb a 413, corrupt data a 400 — each in the client's dialect."""
        if encoding not in SUPPORTED:
            return self._error(415, f"content-encoding {encoding!r} is not supported; send the body plain or "
                                    "as gzip, deflate, br or zstd", kind="bad_request")
        limit = self.gw.cfg.limits.max_request_bytes
        try:
            return decode_body(body, encoding, limit)
        except DecodedTooLarge:
            return self._error(413, f"the decoded request body exceeds {limit} bytes", kind="bad_request")
        except CorruptBody as exc:
            return self._error(400, str(exc), kind="bad_json")

    def _scrub(self, reply: Reply) -> None:
        """A client must not steer the gateway's internals: drop every `x-lunaroute-*` header it sent
        that the gateway is not setting itself (clusters, fallback chains, attempt counts)."""
        for name in self.req.headers or ():
            if name.startswith(INTERNAL_PREFIX) and name not in reply.set_headers:
                reply.remove_headers.append(name)

    def _on_request_body(self, body: bytes) -> Reply:
        redactor = self.gw.redactor
        if redactor is not None and self.gw.cfg.pii.redact_requests:
            clean = redactor.redact(body)
            self.redacted, body = clean is not body, clean
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._error(400, f"the request body is not valid JSON: {exc}", kind="bad_json")
        if not isinstance(doc, dict):
            return self._error(400, "the request body must be a JSON object", kind="bad_json")
        try:
            return self._route_body(doc, body)
        except ClientError as exc:
            kind = "unsupported" if isinstance(exc, TranslationError) else "bad_request"
            return self._error(exc.status, exc.message, param=exc.param, kind=kind)
        except (orjson.JSONEncodeError, RecursionError) as exc:
            if not nested_too_deeply(exc):
                raise
            return self._error(400, TOO_DEEP, kind="bad_json")

    def _route_body(self, doc: dict, raw: bytes) -> Reply:
        req = self.req
        headers = req.headers or {}
        gw = self.gw
        # The substring test on the raw bytes spares the walk through messages for nearly every request.
        marker, changed = take_marker(doc, req.client, gw.provider_names) if MARKER_BYTES in raw else (NO_MARKER, False)
        if marker.kind == "unknown":
            metrics.UNKNOWN_MARKERS.inc()
            log.warning("unknown provider in marker [LUNAROUTE:%s]; routing by default", marker.name)
        prefs_value, popped = pop_preferences(doc)
        changed = changed or popped or self.redacted
        prefs = gw.router.parse_preferences(prefs_value, headers.get("x-provider"))
        model = request_model(doc.get("model"), headers.get("x-model"))
        decision = gw.router.decide(marker, prefs, model, req.path)
        overrides = {n: m for n, m in zip(decision.chain, decision.overrides, strict=True) if m}
        chain = usable_chain(gw.cfg, decision.chain)
        if req.scope is not None:
            refused = self._out_of_scope(chain[0], overrides.get(chain[0]) or model)
            if refused is not None:
                return refused
            chain = tuple(n for n in chain if req.scope.allows_provider(n)
                          and req.scope.allows_model(overrides.get(n) or model))
        name = chain[0]
        provider = gw.provider(name)
        self.provider_name = name
        metrics.ROUTING.labels(name, decision.reason).inc()
        metrics.REQUESTS.labels(req.kind.value, name).inc()
        log.info("route %s %s -> lunaroute:%s (%s)%s%s%s", req.method, req.path, name, decision.reason,
                 f" model_override:{overrides[name]}" if name in overrides else "",
                 f" fallbacks:{','.join(chain[1:])}" if len(chain) > 1 else "",
                 f" key:{req.key}" if req.key else "")
        if req.kind in paths.COUNT_KINDS and provider.type != req.client:
            return self._answer(count_tokens_reply(req.client, doc))
        self.sent_model = overrides.get(name) or model
        if gw.recorder is not None:
            self.draft = Draft(gw.cfg.recording.max_body_bytes, raw, {
                "session": session_of(headers, doc) or "no-session", "request_id": headers.get("x-request-id"),
                "key": req.key or None, "client": req.client, "path": req.path, "provider": name,
                "model": model, "sent_model": self.sent_model, "reason": decision.reason,
                "stream": bool(doc.get("stream")), "client_ip": anonymise_ip(  # the gate's, never a client's
                    headers.get(PEER_HEADER) if self.sealed else headers.get("x-forwarded-for"))})
        if gw.budgets is not None and req.kind not in paths.COUNT_KINDS:
            self.reservation = self._estimate(gw.budgets, doc, raw, name, session_of(headers, doc))
        if len(chain) > 1 and req.kind not in paths.COUNT_KINDS:
            return self._with_fallbacks(doc, changed, model, chain, {n: overrides[n] for n in chain if n in overrides})
        model = overrides.get(name) or model
        if model is not None and doc.get("model") != model:
            doc["model"] = model
            changed = True
        strip_usage = self._ask_for_usage(doc, provider)
        changed = changed or strip_usage
        out = for_provider(name, provider, req.client, req.path, req.query, headers, doc, changed)
        self.response = out.response
        reply = out.reply
        reply.clear_route_cache = True
        reply.set_headers[CLUSTER_HEADER] = cluster_name(name)
        self.started = perf_counter()
        if self.response is None and (self.draft is not None or self.reservation is not None):
            # the record needs the response; a budget needs the provider's usage
            self.response = UsageMeter(req.client, self.draft.add_response if self.draft is not None else None,
                                       strip_usage)
            if strip_usage:
                reply.set_headers["accept-encoding"] = "identity"  # the meter rewrites the stream
        if self.response is None and not gw.sample():
            # Nothing to translate: the response goes to the client without another trip to Python.
            reply.response_header_mode = "SKIP"
        return reply

    def _estimate(self, budgets: Budgets, doc: dict, raw: bytes, name: str, session: str | None) -> Reservation | None:
        """What this request may cost, to reserve: its input at ~4 bytes a token, its output cap."""
        input_tokens = len(raw) // 4
        cap = next((v for f in ("max_tokens", "max_completion_tokens", "max_output_tokens")
                    if isinstance(v := doc.get(f), int) and v > 0), RESERVED_OUTPUT_TOKENS)
        output = min(cap, RESERVED_OUTPUT_TOKENS)
        usd = self.gw.prices.cost(self.sent_model, {"input": input_tokens, "output": output}, name) or 0.0
        return budgets.plan(self.req.key or None, name, session, input_tokens + output, usd, input_tokens)

    def _ask_for_usage(self, doc: dict, provider: Provider) -> bool:
        """An OpenAI stream reports usage only when asked: a budget or a record needs it, so ask for
        it upstream (True: the client did not, and the meter leaves the usage chunk out for it)."""
        if (provider.type != "openai" or self.req.client != "openai" or doc.get("stream") is not True
                or (self.reservation is None and self.draft is None)):
            return False
        options = doc.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return False
        doc["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return True

    def over_budget(self, refusal: Refusal) -> Reply:
        """The 429 for a spent budget, in the client's dialect, naming it and when it resets."""
        self.draft = None  # never sent: nothing to record, nothing to settle
        self.reservation = None
        reply = self._error(429, refusal.message(), kind="budget")
        assert reply.immediate is not None
        reply.immediate.headers["retry-after"] = str(max(int(refusal.resets - time.time()), 1))
        return reply

    def _with_fallbacks(self, doc: dict, changed: bool, model: str | None, chain: tuple[str, ...],
                        overrides: dict[str, str]) -> Reply:
        """Envoy performs the fallbacks: each attempt's cluster comes from these headers, and the
        per-attempt ext_proc (`attempts`) translates and authenticates the body for that provider.
        The body stays in the client's dialect here."""
        req = self.req
        headers = req.headers or {}
        if model is not None and doc.get("model") != model:
            doc["model"] = model
            changed = True
        reply = Reply(clear_route_cache=True, response_header_mode="SKIP")
        if self.draft is not None or self.reservation is not None:
            # the attempts translate; the record and the budget read what reaches the client
            reply.response_header_mode = None
            self.response = UsageMeter(req.client, self.draft.add_response if self.draft is not None else None)
        self.started = perf_counter()
        reply.set_headers[CLUSTER_HEADER] = cluster_name(chain[0])
        for i, name in enumerate(chain[1:], start=1):
            reply.set_headers[FALLBACK_HEADER.format(i)] = cluster_name(name)
        reply.set_headers[ATTEMPTS_HEADER] = str(len(chain))
        reply.set_headers[CHAIN_HEADER] = encode_chain(Chain(
            client=req.client, path=req.path, query=req.query, providers=chain,
            models=overrides,
            stash={h: headers[h] for h in STASHED_HEADERS if h in headers}))
        if changed or req.encoded:  # every attempt parses the body: it gets it decoded
            reply.body = orjson.dumps(doc)
            reply.set_headers["content-length"] = str(len(reply.body))
        return reply

    # -- local answers ---------------------------------------------------------------------------

    def _models(self) -> Reply:
        """/v1/models: when the default provider speaks the client's dialect, its own list with the
        other providers' configured models added; otherwise the configured models, answered here."""
        cfg = self.gw.cfg
        default = cfg.providers[cfg.default_provider]
        ids = advertised_models(cfg)
        one = self.req.path.startswith("/v1/models/")
        scope = self.req.scope
        if scope is not None:
            ids = [m for m in ids if scope.allows_model(m)]
        if (default.type != self.req.client or (one and self.req.path.removeprefix("/v1/models/") in ids)
                or (scope is not None and not scope.allows_provider(cfg.default_provider))):
            return self._answer(models_reply(self.req.client, ids, self.req.path))
        merge = ModelListMerge(models_body_for(self.req.client), ids) if not one and ids else None
        reply = self._forward_as_is(cfg.default_provider, merge)
        if merge is not None and reply.immediate is None:
            reply.set_headers["accept-encoding"] = "identity"
        return reply

    def _out_of_scope(self, name: str, model: str | None, check_model: bool = True) -> Reply | None:
        """A 403 in the client's dialect when the gateway key may not use this provider or model."""
        scope, key = self.req.scope, self.req.key
        if scope is None:
            return None
        if not scope.allows_provider(name):
            return self._error(403, f"the gateway key {key!r} may not use provider {name!r}", kind="forbidden")
        if check_model and not scope.allows_model(model):
            return self._error(403, f"the gateway key {key!r} may not use model {model!r}", param="model",
                               kind="forbidden")
        return None

    def _native_only(self) -> Reply:
        """An API only a provider of the client's own dialect has: the first such provider, as sent."""
        cfg = self.gw.cfg
        names = [cfg.default_provider] + list(cfg.providers)
        for name in names:
            if cfg.providers[name].type == self.req.client:
                return self._forward_as_is(name)
        return self._error(404, f"{self.req.path} is an API of the {self.req.client} dialect and no provider of "
                                f"type {self.req.client} is configured", kind="not_found")

    def _stored_completions(self) -> Reply:
        """/v1/chat/completions/{id}…: OpenAI's stored completions, kept by the provider that answered.
        To the default provider, else the bypass provider, when it speaks OpenAI's dialect; never to a
        provider the config did not open to every path."""
        cfg = self.gw.cfg
        for name in (cfg.default_provider, cfg.bypass_provider if cfg.bypass.enabled else None):
            if name is not None and cfg.providers[name].type == "openai":
                return self._forward_as_is(name)
        return self._error(404, f"{self.req.path} is served only when the default or the bypass provider is "
                                "OpenAI-type", kind="not_found")

    def _bypass(self) -> Reply:
        cfg = self.gw.cfg
        if not cfg.bypass.enabled:
            return self._error(404, "This path is not served by the gateway (bypass is disabled).",
                               kind="not_found")
        return self._forward_as_is(cfg.bypass_provider)

    def _forward_as_is(self, name: str, response: ModelListMerge | None = None) -> Reply:
        """Forward the request unchanged (path prefix and credentials aside) to `name`, deciding in the
        headers phase: the body is not read, and the response is looked at only to merge `response`."""
        refused = self._out_of_scope(name, None, check_model=False)
        scope = self.req.scope
        if refused is None and scope is not None and scope.models and self.req.kind is not Kind.MODELS:
            # forwarded as sent, its model unread: not for a key limited to some models
            refused = self._error(403, f"the gateway key {self.req.key!r} is limited to some models; "
                                       f"{self.req.path} is not a model API it may use", kind="forbidden")
        if refused is not None:
            return refused
        provider = self.gw.provider(name)
        self.provider_name = name
        metrics.REQUESTS.labels(self.req.kind.value, name).inc()
        self.response = response
        reply = Reply(clear_route_cache=True, request_body_mode="NONE",
                      response_header_mode=None if response else "SKIP")
        reply.set_headers[CLUSTER_HEADER] = cluster_name(name)
        reply.set_headers[":path"] = provider.upstream_path(self.req.path) + self.req.query
        headers = self.req.headers or {}
        credentials(provider, self.req.client, headers, reply)
        dialect_headers(provider, False, headers, reply)
        self._scrub(reply)
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
        self.status = status_of(headers)
        if self.draft is not None and headers.get("x-lunaroute-provider"):
            self.draft.meta["provider"] = headers["x-lunaroute-provider"]  # the chain's member that answered
        metrics.RESPONSES.labels(self.req.kind.value, self.provider_name or "gateway", str(self.status)).inc()
        if self.started and self.status < 400:
            self.ttfb = perf_counter() - self.started
            if self.response is None:  # a sampled passthrough: latency only
                self.gw.observed.observe(self.provider_name, self.ttfb, 0, self.ttfb)
        return self.response.on_headers(self.status, headers) if self.response else Reply()

    def on_response_body(self, chunk: bytes, end_of_stream: bool) -> Reply:
        if self.response is None:
            return Reply()
        began = perf_counter()
        reply = self.response.on_body(chunk, end_of_stream)
        self.busy += perf_counter() - began
        if self.draft is not None and isinstance(self.response, ResponseTranslation):
            self.draft.add_response(reply.body or b"")
        if not self.first_byte and chunk:
            self.first_byte = perf_counter()
        if end_of_stream and self.response.usage:
            usage = self.response.usage
            if self.ttfb >= 0:
                self.gw.observed.observe(self.provider_name, self.ttfb, usage.get("output", 0),
                                         perf_counter() - self.started)
        if end_of_stream:
            self._done("ok")
        return reply

    def close(self) -> None:
        """The ext_proc stream ended. An exchange not done yet was interrupted (the client went away,
        or the provider's stream was cut): recorded and charged as such, with what came. A translated
        stream whose provider had stopped is complete (its client may close before Envoy's end of
        stream reaches us); an error status whose body nobody asked for ends here too."""
        stopped = isinstance(self.response, ResponseTranslation) and self.response.streaming and self.response.usage
        self._done("ok" if stopped else "interrupted" if self.status < 400 else "error")

    def _done(self, outcome: str) -> None:
        """Once per exchange that went to a provider: its metrics, log line, record and budgets."""
        if self.finished or not self.started:
            return
        self.finished = True
        usage = dict(self.response.usage) if self.response is not None else {}
        provider = self.draft.meta["provider"] if self.draft is not None else self.provider_name
        cost = self.gw.prices.cost(self.sent_model, usage, provider) if usage else None
        now = perf_counter()
        ttft = self.first_byte - self.started if self.first_byte else None
        if usage:
            count_usage(provider, usage)
        metrics.observe_exchange(provider, self.sent_model or "", usage, cost, now - self.started, ttft,
                                 self.busy, read=self.response is not None)
        if self.draft is not None:
            self._finish_record(outcome, usage, cost)
        if self.response is not None:
            log.info("done %s", orjson.dumps({
                "provider": provider, "model": self.sent_model, "key": self.req.key or None,
                "client": self.req.client, "path": self.req.path, "status": self.status, "outcome": outcome,
                "usage": usage, "cost_usd": cost, "duration_ms": round((now - self.started) * 1000, 3),
                "ttft_ms": None if ttft is None else round(ttft * 1000, 3),
                "overhead_ms": round(self.busy * 1000, 3)}).decode())
        self._settle(usage, cost)

    def _finish_record(self, outcome: str, usage: dict[str, int], cost: float | None) -> None:
        """Hand this request's record to the writer thread."""
        assert self.draft is not None and self.gw.recorder is not None
        self.gw.recorder.submit(self.draft.finish(status=self.status, outcome=outcome, usage=usage, cost_usd=cost,
                                                  overhead_ms=round(self.busy * 1000, 3)))

    def _settle(self, usage: dict[str, int], cost: float | None) -> None:
        """Replace this request's reservation by what the provider reported (cache writes count;
        cache reads are in the input), or by the input estimate when it reported nothing."""
        res, budgets = self.reservation, self.gw.budgets
        if res is None or budgets is None:
            return
        if not usage:
            budgets.settle(res, None, None)
            return
        budgets.settle(res, usage.get("input", 0) + usage.get("output", 0) + usage.get("cache_write", 0), cost or 0.0)

    def internal_error(self, phase: str) -> Reply:
        """Something in the pipeline broke: answer in the client's dialect, keep serving."""
        log.exception("internal error in phase %s for %s %s", phase, self.req.method, self.req.path)
        return self._error(500, "the gateway failed to process this request", kind="internal")
