"""Fallback chains: each attempt Envoy makes, prepared for the provider it goes to.

Envoy owns the retry. The request phase (`exchange`) names the chain's clusters in headers and the
route re-selects the cluster per attempt (`refresh_cluster_on_retry`). Each provider cluster runs a
per-attempt ext_proc filter, switched on only by the chain header, which lands here: translate the
client's body for *this* provider, set its path and credentials, and translate its response back.

Envoy shares one header map between attempts, so every attempt sets everything it needs (`:path`,
credentials, `content-length`) and restores from the chain's stash what an earlier attempt removed.
A provider that uses the client's own credentials can only follow providers that do too: once an
attempt has replaced or removed the client's key, it is gone for good.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING

import orjson

from .actions import Reply
from .config import Config
from .dialects import anthropic
from .dialects.base import Dialect, TranslationError
from .envoy_config import CHAIN_HEADER, INTERNAL_PREFIX
from .errors import TOO_DEEP, nested_too_deeply
from .forwarding import credentials, dialect_headers, for_provider
from .local_replies import error_reply
from .observe import metrics
from .paths import classify
from .responses import ResponseTranslation, UsageMeter, count_usage, status_of

if TYPE_CHECKING:
    from .exchange import Gateway

log = logging.getLogger("lunaroute")

RETRIABLE = frozenset({429, 500, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True)
class Chain:
    client: Dialect
    path: str
    query: str
    providers: tuple[str, ...]
    models: dict[str, str] = field(default_factory=dict)  # per-provider model override
    stash: dict[str, str] = field(default_factory=dict)  # client headers an attempt may need back


def encode_chain(chain: Chain) -> str:
    return orjson.dumps({"c": chain.client, "p": chain.path, "q": chain.query, "n": chain.providers,
                         "m": chain.models, "s": chain.stash}).decode()


def decode_chain(value: str) -> Chain:
    raw = orjson.loads(value)
    return Chain(client=raw["c"], path=raw["p"], query=raw["q"], providers=tuple(raw["n"]),
                 models=raw.get("m") or {}, stash=raw.get("s") or {})


def usable_chain(cfg: Config, chain: tuple[str, ...]) -> tuple[str, ...]:
    """Drop providers needing the client's key once an earlier one removed it (see module docstring)."""
    out: list[str] = []
    key_gone = False
    for name in chain:
        provider = cfg.providers[name]
        if provider.uses_client_key and key_gone:
            log.debug("fallback %s skipped: the client's credentials are gone after a keyed provider", name)
            continue
        key_gone = key_gone or not provider.uses_client_key
        out.append(name)
    return tuple(out)


class AttemptExchange:
    """One attempt of a fallback chain, on the provider cluster Envoy chose for it. Its response feeds
    the same metrics, budget, latency and records as a single provider's (`Gateway.settle`), and every
    attempt's status is counted, failures included."""

    def __init__(self, gw: Gateway, provider: str) -> None:
        self.gw = gw
        self.cfg: Config = gw.cfg
        self.name = provider
        self.provider = self.cfg.providers[provider]
        self.chain: Chain | None = None
        self.headers: dict[str, str] = {}
        self.attempt = 1
        self.response: ResponseTranslation | None = None
        self.status = 0
        self.started = 0.0  # when this attempt's request left for the provider
        self.ttfb = -1.0

    @property
    def more_to_come(self) -> bool:
        return self.chain is not None and self.attempt < len(self.chain.providers)

    def on_request_headers(self, headers: dict[str, str], end_of_stream: bool) -> Reply:
        self.headers = headers
        # The request phase removed any chain header a client sent and wrote this one itself.
        self.chain = decode_chain(headers[CHAIN_HEADER])
        if self.name not in self.chain.providers or not set(self.chain.providers) <= set(self.cfg.providers):
            raise ValueError(f"attempt on {self.name} outside its chain {self.chain.providers}")
        try:
            self.attempt = int(headers.get("x-envoy-attempt-count", "1"))
        except ValueError:
            self.attempt = 1
        reply = Reply()
        if not self.more_to_come:
            # The last attempt: the chain's bookkeeping need not reach the provider.
            reply.remove_headers += [h for h in headers if h.startswith(INTERNAL_PREFIX)]
        if self.attempt > 1:
            previous = self.chain.providers[(self.attempt - 2) % len(self.chain.providers)]
            metrics.FALLBACKS.labels(previous, self.name).inc()
            log.warning("fallback: attempt %d goes to lunaroute:%s after %s failed", self.attempt, self.name,
                        previous)
        return reply

    def on_request_body(self, body: bytes) -> Reply:
        chain = self.chain
        assert chain is not None
        model = chain.models.get(self.name)
        if self.provider.type == chain.client and not model and not self.provider.tool_schema.drop_keys \
                and not (self.provider.type == "anthropic" and anthropic.may_need_fit(body)):
            return self._as_sent(body)
        doc = orjson.loads(body)  # the request phase already parsed and checked it
        changed = bool(model) and doc.get("model") != model
        if changed:
            doc["model"] = model
        try:
            out = for_provider(self.name, self.provider, chain.client, chain.path, chain.query, self.headers, doc,
                               changed, stash=chain.stash)
        except TranslationError as exc:
            return error_reply(chain.client, exc.status, exc.message, exc.param)
        except (orjson.JSONEncodeError, RecursionError) as exc:
            if not nested_too_deeply(exc):
                raise
            return error_reply(chain.client, 400, TOO_DEEP)
        if out.reply.body is None:
            # Untouched bytes, but the shared header map may hold an earlier attempt's length.
            out.reply.set_headers["content-length"] = str(len(body))
        self.started = perf_counter()
        self.response = out.response or self._meter()
        if self.response is None and not self.more_to_come:
            out.reply.response_header_mode = "SKIP"
        return out.reply

    def _meter(self) -> UsageMeter | None:
        """One untranslated response in `Gateway.SAMPLE_EVERY` is read, for the latency and throughput
        `sort` reads (as for single providers); budgets are settled by the request phase."""
        return UsageMeter(self.chain.client) if self.gw.sample() and self.chain else None

    def _as_sent(self, body: bytes) -> Reply:
        """Same dialect, no model change: the client's bytes go as they are, no parsing."""
        chain = self.chain
        assert chain is not None
        reply = Reply()
        reply.set_headers[":path"] = self.provider.upstream_path(chain.path) + chain.query
        credentials(self.provider, chain.client, self.headers, reply)
        dialect_headers(self.provider, False, self.headers, reply, chain.stash)
        # Untouched bytes, but the shared header map may hold an earlier attempt's length.
        reply.set_headers["content-length"] = str(len(body))
        self.started = perf_counter()
        self.response = self._meter()
        if self.response is None and not self.more_to_come:
            reply.response_header_mode = "SKIP"
        return reply

    def on_response_headers(self, headers: dict[str, str]) -> Reply:
        self.status = status_of(headers)
        chain = self.chain
        route = classify("POST", chain.path).value if chain else "unknown"
        metrics.RESPONSES.labels(route, self.name, str(self.status)).inc()
        if self.started and self.status < 400:
            self.ttfb = perf_counter() - self.started
        reply = self.response.on_headers(self.status, headers) if self.response else Reply()
        if self.status in RETRIABLE and self.more_to_come and "retry-after" in headers:
            # Another provider is next: do not make Envoy wait for this one's rate limit to pass.
            reply.remove_headers.append("retry-after")
        return reply

    def on_response_body(self, chunk: bytes, end_of_stream: bool) -> Reply:
        if self.response is None:
            return Reply()
        reply = self.response.on_body(chunk, end_of_stream)
        if end_of_stream and self.response.usage:
            usage = self.response.usage
            count_usage(self.name, usage)  # token metrics; the request phase settles budgets and records
            if self.ttfb >= 0:
                self.gw.observed.observe(self.name, self.ttfb, usage.get("output", 0), perf_counter() - self.started)
        return reply

    def internal_error(self, phase: str) -> Reply:
        log.exception("internal error in attempt phase %s", phase)
        client = self.chain.client if self.chain else "anthropic"
        return error_reply(client, 500, "the gateway failed to prepare this attempt")
