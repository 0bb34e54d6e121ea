"""The request phase: one HTTP exchange on the gateway's listener, walking through Envoy's phases.

Sans-IO: each `on_*` method takes what Envoy sent for that phase (header dicts, body bytes) and returns
a `Reply`; the gRPC servicer only moves messages. The decisions are `plan`'s pure stages, the request
each provider gets is `prepare`'s, and what the request cost is settled once by the `ledger`. What is
left here is the order of things, kept in an explicit `Phase`.

`sealed`: the stream comes from the gateway's own Envoy, whose first filter (the gate) removed every
client-sent internal header and checked the gateway key; `x-lunaroute-client` and `x-lunaroute-scope`
are then the gate's. In a mesh nothing is sealed: internal headers are dropped here, and the gateway's
own endpoints (/readyz, /metrics) belong to the app behind the mesh.
"""

from __future__ import annotations

import logging
import time
from enum import Enum
from time import perf_counter

import orjson

from . import paths
from .actions import Reply
from .admit import Forward, PassThrough, admit
from .answers import count_tokens_reply, error_reply
from .dialects.base import TranslationError
from .encoding import SUPPORTED, CorruptBody, DecodedTooLarge, decode_body
from .errors import TOO_DEEP, ClientError, nested_too_deeply
from .gateway import Gateway
from .ledger import Settlement
from .observe import metrics
from .observe.budgets import RESERVED_OUTPUT_TOKENS, Refusal, Reservation
from .observe.recording import Draft, anonymise_ip
from .plan import Plan, Refused, RequestLine, read_request, refuse_duplicates, route
from .pools.state import AllKeysOut
from .prepare import STASHED_HEADERS, prepare, target_for
from .responses import ModelListMerge, ResponseTranslation, UsageMeter, status_of
from .session_id import valid_session
from .wire import (
    ATTEMPTS_HEADER,
    CHAIN_HEADER,
    CLUSTER_HEADER,
    FALLBACK_HEADER,
    INTERNAL_PREFIX,
    PEER_HEADER,
    POOL_KEY_HEADER,
    PROVIDER_HEADER,
    Chain,
    cluster_name,
    encode_chain,
)

log = logging.getLogger("lunaroute")


class Phase(Enum):
    """Where the exchange is. Only `SENT` and `RESPONDING` have something to settle."""

    HEADERS = "headers"  # waiting for the request body (or answered in the headers phase)
    ANSWERED = "answered"  # the gateway answered itself: nothing went to a provider
    SENT = "sent"  # the request left for a provider
    RESPONDING = "responding"  # the provider's response headers came
    SETTLED = "settled"  # the ledger has it


class Exchange:
    """One request and its response. Created per ext_proc stream."""

    def __init__(self, gw: Gateway, sealed: bool = False) -> None:
        self.gw = gw
        self.sealed = sealed
        self.phase = Phase.HEADERS
        self.req = RequestLine()
        self.plan: Plan | None = None
        self.provider_name = ""  # the provider the request went to first
        self.sent_model: str | None = None
        self.chained = False  # a fallback chain: its attempts own their statuses and latency
        self.response: ResponseTranslation | ModelListMerge | UsageMeter | None = None
        self.status = 0
        self.started = 0.0  # when the request left for the provider
        self.ttfb = -1.0
        self.first_byte = 0.0  # when the response body's first bytes came
        self.busy = 0.0  # seconds the gateway itself spent on this exchange (its overhead)
        self.draft: Draft | None = None  # this request's session record, when recording
        self.reservation: Reservation | None = None  # budgets this request draws on; the server reserves
        self.redacted = False  # PII was taken out of the request before it went on (pii.redact_requests)
        self.pool_key = ""  # the name of the credential-pool key that answered (extproc.pools)

    # -- request headers -----------------------------------------------------------------------------

    def on_request_headers(self, headers: dict[str, str], end_of_stream: bool) -> Reply:
        self.req = req = read_request(headers, self.sealed)
        try:
            decision = admit(self.gw, req, self.sealed)
        except Refused as exc:
            if exc.kind == "access":
                log.error("access.keys is set but this request did not pass the gateway's gate (a mesh?); refused")
            return self._error(exc.status, exc.message, exc.param, exc.kind)
        if isinstance(decision, Reply):
            return self._answer(decision)
        if isinstance(decision, Forward):
            return self._forward(decision)
        if isinstance(decision, PassThrough):
            return self._scrubbed(Reply(request_body_mode="NONE", response_header_mode="SKIP",
                                        response_body_mode="NONE"))
        if end_of_stream:
            return self._error(400, "the request has no body; send a JSON object", kind="bad_request")
        return Reply()

    # -- request body --------------------------------------------------------------------------------

    def on_request_body(self, body: bytes) -> Reply:
        if self.req.kind not in paths.BODY_KINDS or self.phase is not Phase.HEADERS:
            return Reply()  # answered or forwarded in the headers phase; the body is not ours to route
        began = perf_counter()
        encoding = self.req.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            decoded = self._decoded(body, encoding)
            if isinstance(decoded, Reply):
                return decoded
            body, self.req.encoded = decoded, True
        reply = self._routed(body)
        if reply.immediate is None:
            if self.req.encoded and reply.body is not None:
                reply.remove_headers.append("content-encoding")  # the new body goes uncompressed
            self._scrubbed(reply)
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

    def _scrubbed(self, reply: Reply) -> Reply:
        """A client must not steer the gateway's internals: drop every `x-lunaroute-*` header it sent
        that the gateway is not setting itself (clusters, fallback chains, attempt counts)."""
        for name in self.req.headers:
            if name.startswith(INTERNAL_PREFIX) and name not in reply.set_headers:
                reply.remove_headers.append(name)
        return reply

    def _routed(self, body: bytes) -> Reply:
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
            self.plan = plan = route(self.gw, self.req, doc, body, self.redacted)
            return self._send(plan, doc, body)
        except Refused as exc:
            return self._error(exc.status, exc.message, exc.param, exc.kind)
        except ClientError as exc:
            kind = "unsupported" if isinstance(exc, TranslationError) else "bad_request"
            return self._error(exc.status, exc.message, param=exc.param, kind=kind)
        except (orjson.JSONEncodeError, RecursionError) as exc:
            if not nested_too_deeply(exc):
                raise
            return self._error(400, TOO_DEEP, kind="bad_json")

    def _send(self, plan: Plan, doc: dict, raw: bytes) -> Reply:
        """Act on the plan: answer token counts locally where the provider cannot, open the record and
        the reservation, then hand the request to one provider or to Envoy's fallback chain."""
        req, gw = self.req, self.gw
        if not plan.changed:  # the provider may get these very bytes: they must say one thing
            refuse_duplicates(raw)
        name = plan.provider
        provider = gw.provider(name)
        self.provider_name, self.sent_model = name, plan.model
        metrics.ROUTING.labels(name, plan.reason).inc()
        metrics.REQUESTS.labels(req.kind.value, name).inc()
        log.info("route %s %s -> lunaroute:%s (%s)%s%s%s", req.method, req.path, name, plan.reason,
                 " model_override:" + str(plan.model)[:200] if plan.model != plan.client_model else "",
                 f" fallbacks:{','.join(plan.chain[1:])}" if len(plan.chain) > 1 else "",
                 f" key:{req.key}" if req.key else "")
        if req.kind in paths.COUNT_KINDS:
            if provider.type != req.client:
                return self._answer(count_tokens_reply(req.client, doc))
            chain = (name,)
        else:
            chain = plan.chain
        try:  # credential pools: the conversation's start key (extproc.pools); chains start on the first
            cluster = gw.pools.start_cluster(name, req.headers, doc) if len(chain) == 1 else cluster_name(name)
        except AllKeysOut as exc:
            return self._all_keys_out(exc)
        if gw.recorder is not None:
            self.draft = Draft(gw.cfg.recording.max_body_bytes, raw, {
                "session": plan.session or valid_session(req.headers.get("x-request-id")) or "no-session",
                "request_id": req.headers.get("x-request-id"),
                "key": req.key or None, "client": req.client, "path": req.path, "provider": name,
                "model": plan.client_model, "sent_model": plan.model, "reason": plan.reason,
                "stream": bool(doc.get("stream")), "client_ip": anonymise_ip(  # the gate's, never a client's
                    req.headers.get(PEER_HEADER) if self.sealed else req.headers.get("x-forwarded-for"))})
        if gw.budgets is not None and req.kind not in paths.COUNT_KINDS:
            self.reservation = self._estimate(doc, raw, name, plan)
        if len(chain) > 1:
            return self._with_fallbacks(plan, doc)
        changed = plan.changed
        if plan.model is not None and doc.get("model") != plan.model:
            doc["model"] = plan.model
            changed = True
        strip_usage = self._ask_for_usage(doc, provider)
        out = prepare(name, provider, req.client, req.path, req.query, req.headers, doc, changed or strip_usage)
        self.response = out.response
        reply = out.reply
        reply.clear_route_cache = True
        reply.set_headers[CLUSTER_HEADER] = cluster
        self._left()
        if self.response is None and (self.draft is not None or self.reservation is not None):
            # the record needs the response; a budget needs the provider's usage
            self.response = UsageMeter(req.client, self.draft.add_response if self.draft is not None else None,
                                       strip_usage)
            if strip_usage:
                reply.set_headers["accept-encoding"] = "identity"  # the meter rewrites the stream
        if self.response is None and not gw.sample():
            # Nothing to read: the response goes to the client without another trip to Python.
            reply.response_header_mode = "SKIP"
        return reply

    def _left(self) -> None:
        self.started = perf_counter()
        self.phase = Phase.SENT

    def _estimate(self, doc: dict, raw: bytes, name: str, plan: Plan) -> Reservation | None:
        """What this request may cost, to reserve: its input at ~4 bytes a token, and its output cap as
        the provider will apply it (the request's `max_tokens` clamped by the provider's limits), or
        `RESERVED_OUTPUT_TOKENS` when the request names none."""
        assert self.gw.budgets is not None
        input_tokens = len(raw) // 4
        asked = next((v for f in ("max_tokens", "max_completion_tokens", "max_output_tokens")
                      if isinstance(v := doc.get(f), int) and not isinstance(v, bool) and v > 0), None)
        clamp = target_for(name, self.gw.provider(name)).max_tokens_for(plan.model)
        output = min(x for x in (asked or RESERVED_OUTPUT_TOKENS, clamp) if x)
        usd = self.gw.prices.cost(plan.model, {"input": input_tokens, "output": output}, name) or 0.0
        return self.gw.budgets.plan(self.req.key or None, name, plan.session, input_tokens + output, usd,
                                    input_tokens)

    def _ask_for_usage(self, doc: dict, provider) -> bool:  # noqa: ANN001 - a config Provider
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
        self.phase = Phase.ANSWERED
        reply = self._error(429, refusal.message(), kind="budget")
        assert reply.immediate is not None
        reply.immediate.headers["retry-after"] = str(max(int(refusal.resets - time.time()), 1))
        return reply

    def _all_keys_out(self, exc: AllKeysOut) -> Reply:
        """Every key of the provider's pool is cooling or revoked: a 429 in the client's dialect, with
        the soonest time one is back."""
        reply = self._error(429, f"every key of provider {exc.provider!r} is rate limited; retry in "
                                 f"{exc.retry_after} s", kind="rate_limited")
        assert reply.immediate is not None
        reply.immediate.headers["retry-after"] = str(exc.retry_after)
        return reply

    def _with_fallbacks(self, plan: Plan, doc: dict) -> Reply:
        """Envoy performs the fallbacks: each attempt's cluster comes from these headers, and the
        per-attempt ext_proc (`attempts`) translates and authenticates the body for that provider.
        The body stays in the client's dialect here."""
        req = self.req
        changed = plan.changed
        if plan.client_model is not None and doc.get("model") != plan.client_model:
            doc["model"] = plan.client_model
            changed = True
        self.chained = True
        reply = Reply(clear_route_cache=True, response_header_mode="SKIP")
        metered = self.draft is not None or self.reservation is not None
        if metered:
            # the attempts translate; the record and the budget read what reaches the client
            reply.response_header_mode = None
            self.response = UsageMeter(req.client, self.draft.add_response if self.draft is not None else None)
        self._left()
        reply.set_headers[CLUSTER_HEADER] = cluster_name(plan.chain[0])
        for i, name in enumerate(plan.chain[1:], start=1):
            reply.set_headers[FALLBACK_HEADER.format(i)] = cluster_name(name)
        reply.set_headers[ATTEMPTS_HEADER] = str(len(plan.chain))
        reply.set_headers[CHAIN_HEADER] = encode_chain(Chain(
            client=req.client, path=req.path, query=req.query, providers=plan.chain, models=plan.overrides(),
            stash={h: req.headers[h] for h in STASHED_HEADERS if h in req.headers}, model=plan.client_model,
            key=req.key, session=plan.session, metered=metered,
            reserved=self.reservation.provider if self.reservation is not None else ""))
        if changed or req.encoded:  # every attempt parses the body: it gets it decoded
            reply.body = orjson.dumps(doc)
            reply.set_headers["content-length"] = str(len(reply.body))
        return reply

    # -- forwarded in the headers phase --------------------------------------------------------------

    def _forward(self, decision: Forward) -> Reply:
        """The request goes unchanged (path prefix and credentials aside) to the provider `admit` chose:
        the body is not read, and the response is looked at only to merge the models list."""
        req, name = self.req, decision.provider
        self.provider_name = name
        metrics.REQUESTS.labels(req.kind.value, name).inc()
        self.response = decision.merge
        reply = prepare(name, self.gw.provider(name), req.client, req.path, req.query, req.headers).reply
        reply.clear_route_cache = True
        reply.request_body_mode = "NONE"
        reply.response_header_mode = None if decision.merge else "SKIP"
        try:  # credential pools (extproc.pools): no body read, so the session headers pick the key
            reply.set_headers[CLUSTER_HEADER] = self.gw.pools.start_cluster(name, req.headers, None)
        except AllKeysOut as exc:
            return self._all_keys_out(exc)
        if decision.merge is not None:
            reply.set_headers["accept-encoding"] = "identity"
        return self._scrubbed(reply)

    def _error(self, status: int, message: str, param: str | None = None, kind: str = "bad_request") -> Reply:
        metrics.CLIENT_ERRORS.labels(kind).inc()
        return self._answer(error_reply(self.req.client, status, message, param))

    def _answer(self, reply: Reply) -> Reply:
        assert reply.immediate is not None
        self.status = reply.immediate.status
        self.phase = Phase.ANSWERED
        route, provider = self.req.kind.value, self.provider_name or "gateway"
        if not self.provider_name:
            metrics.REQUESTS.labels(route, provider).inc()
        metrics.RESPONSES.labels(route, provider, str(self.status)).inc()
        return reply

    # -- response ------------------------------------------------------------------------------------

    def on_response_headers(self, headers: dict[str, str]) -> Reply:
        self.status = status_of(headers)
        if self.phase is Phase.SENT:
            self.phase = Phase.RESPONDING
        answered = headers.get(PROVIDER_HEADER)
        if answered and POOL_KEY_HEADER in headers:  # a pool key's answer teaches its cooldown (extproc.pools)
            self.pool_key = headers[POOL_KEY_HEADER]
            self.gw.pools.observe(answered, self.pool_key, self.status, headers)
            if self.draft is not None:
                self.draft.meta["pool_key"] = self.pool_key
        if self.chained and answered in self.gw.provider_names and self.plan is not None:
            self.provider_name = answered  # the chain's member that answered
            self.sent_model = self.plan.models.get(answered)
        if not self.chained:  # a chain's attempts count their own statuses
            self.gw.ledger.status(self.req.kind.value, self.provider_name or "gateway", self.status)
        if self.started and self.status < 400:
            self.ttfb = perf_counter() - self.started
            if self.response is None and not self.chained:  # a sampled passthrough: latency only
                self.gw.ledger.latency(self.provider_name, self.ttfb, 0, self.ttfb)
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
        if end_of_stream:
            self._settle("ok")
        return reply

    def close(self) -> None:
        """The ext_proc stream ended. An exchange not settled yet was interrupted (the client went away,
        or the provider's stream was cut): recorded and charged as such, with what came. A translated
        stream whose provider had stopped is complete (its client may close before Envoy's end of
        stream reaches us); an error status whose body nobody asked for ends here too."""
        stopped = isinstance(self.response, ResponseTranslation) and self.response.streaming and self.response.usage
        self._settle("ok" if stopped else "interrupted" if self.status < 400 else "error")

    def _settle(self, outcome: str) -> None:
        """Once per exchange that went to a provider: the ledger's request-phase part."""
        if self.phase not in (Phase.SENT, Phase.RESPONDING):
            return
        self.phase = Phase.SETTLED
        now = perf_counter()
        read = self.response is not None
        usage = dict(self.response.usage) if self.response is not None else {}
        s = Settlement(self.provider_name, self.sent_model, usage, self.status,
                       now - self.started, self.first_byte - self.started if self.first_byte else None, self.busy)
        ledger = self.gw.ledger
        # when this phase read the response it owns the usage (a chain's attempts then leave it)
        cost = ledger.usage(s, read=read, key=self.req.key)
        if read and not self.chained and s.usage and self.ttfb >= 0:
            ledger.latency(s.provider, self.ttfb, s.usage.get("output", 0), s.duration_s)
        ledger.record(self.draft, s, outcome, cost)
        if read:
            ledger.done_line(s, cost, outcome, self.req.key, self.req.client, self.req.path)
        ledger.budget(self.reservation, s, cost)
        if self.pool_key and s.usage:  # today's tokens per pool key (extproc.pools)
            self.gw.pools.used(s.provider, self.pool_key, sum(s.usage.get(k, 0) for k in ("input", "output")))

    def internal_error(self, phase: str) -> Reply:
        """Something in the pipeline broke: answer in the client's dialect, keep serving."""
        log.exception("internal error in phase %s for %s %s", phase, self.req.method, self.req.path)
        return self._error(500, "the gateway failed to process this request", kind="internal")
