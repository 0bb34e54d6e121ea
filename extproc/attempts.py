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
from time import perf_counter
from typing import TYPE_CHECKING

import orjson

from .actions import Reply
from .answers import error_reply
from .config import Config
from .dialects import anthropic
from .dialects.base import TranslationError
from .errors import TOO_DEEP, nested_too_deeply
from .ledger import Settlement
from .observe import metrics
from .observe.budgets import Refusal
from .paths import classify
from .prepare import prepare
from .responses import ResponseTranslation, UsageMeter, status_of
from .wire import ATTEMPT_COUNT_HEADER, CHAIN_HEADER, INTERNAL_PREFIX, Chain, decode_chain

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("lunaroute")

RETRIABLE = frozenset({429, 500, 502, 503, 504, 529})


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
    """One attempt of a fallback chain, on the provider cluster Envoy chose for it. By the ledger's
    rule it settles its own status and latency, and the usage when the request phase does not read
    the response (`Chain.metered`)."""

    def __init__(self, gw: Gateway, provider: str) -> None:
        self.gw = gw
        self.cfg: Config = gw.cfg
        self.name = provider
        self.provider = self.cfg.providers[provider]
        self.chain: Chain | None = None
        self.headers: dict[str, str] = {}
        self.attempt = 1
        self.response: ResponseTranslation | UsageMeter | None = None
        self.status = 0
        self.started = 0.0  # when this attempt's request left for the provider
        self.ttfb = -1.0
        self.first_byte = 0.0
        # Budgets this attempt's provider must not have spent (the servicer asks the store, off the loop)
        self.budget_check: tuple[str | None, str, str | None, frozenset[str]] | None = None

    @property
    def more_to_come(self) -> bool:
        return self.chain is not None and self.attempt < len(self.chain.providers)

    def on_request_headers(self, headers: dict[str, str], end_of_stream: bool) -> Reply:
        self.headers = headers
        # The request phase removed any chain header a client sent and wrote this one itself.
        self.chain = chain = decode_chain(headers[CHAIN_HEADER])
        if self.name not in chain.providers or not set(chain.providers) <= set(self.cfg.providers):
            raise ValueError(f"attempt on {self.name} outside its chain {chain.providers}")
        try:
            self.attempt = int(headers.get(ATTEMPT_COUNT_HEADER, "1"))
        except ValueError:
            self.attempt = 1
        reply = Reply()
        if not self.more_to_come:
            # The last attempt: the chain's bookkeeping need not reach the provider.
            reply.remove_headers += [h for h in headers if h.startswith(INTERNAL_PREFIX)]
        budgets = self.gw.budgets
        if budgets is not None and chain.reserved and self.name != chain.reserved:
            key = chain.key or None
            reserved = frozenset(d.key for d in budgets.draws(key, chain.reserved, chain.session))
            self.budget_check = (key, self.name, chain.session, reserved)
        if self.attempt > 1:
            previous = chain.providers[(self.attempt - 2) % len(chain.providers)]
            metrics.FALLBACKS.labels(previous, self.name).inc()
            log.warning("fallback: attempt %d goes to lunaroute:%s after %s failed", self.attempt, self.name,
                        previous)
        return reply

    def over_budget(self, refusal: Refusal) -> Reply:
        """This attempt's provider has spent a budget: a 429 in the client's dialect, which Envoy treats
        as this attempt's answer (the next provider of the chain is tried, if any)."""
        assert self.chain is not None
        metrics.CLIENT_ERRORS.labels("budget").inc()
        log.warning("fallback to lunaroute:%s refused: %s", self.name, refusal.message())
        return error_reply(self.chain.client, 429, refusal.message())

    def on_request_body(self, body: bytes) -> Reply:
        chain = self.chain
        assert chain is not None
        model = chain.models.get(self.name)
        doc: dict | None = None
        changed = False
        if self.provider.type != chain.client or model or self.provider.tool_schema.drop_keys \
                or (self.provider.type == "anthropic" and anthropic.may_need_fit(body)):
            parsed: dict = orjson.loads(body)  # the request phase already parsed and checked it
            changed = bool(model) and parsed.get("model") != model
            if changed:
                parsed["model"] = model
            doc = parsed
        try:
            out = prepare(self.name, self.provider, chain.client, chain.path, chain.query, self.headers, doc,
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
        # One untranslated response in `Gateway.SAMPLE_EVERY` is read for the latency `sort` reads.
        self.response = out.response or (UsageMeter(chain.client) if self.gw.sample() else None)
        if self.response is None and not self.more_to_come:
            out.reply.response_header_mode = "SKIP"
        return out.reply

    def on_response_headers(self, headers: dict[str, str]) -> Reply:
        self.status = status_of(headers)
        chain = self.chain
        route = classify("POST", chain.path).value if chain else "unknown"
        self.gw.ledger.status(route, self.name, self.status)
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
        if not self.first_byte and chunk:
            self.first_byte = perf_counter()
        reply = self.response.on_body(chunk, end_of_stream)
        if end_of_stream and self.response.usage and self.chain is not None:
            usage = dict(self.response.usage)
            now = perf_counter()
            if self.ttfb >= 0:
                self.gw.ledger.latency(self.name, self.ttfb, usage.get("output", 0), now - self.started)
            if not self.chain.metered and self.status < 400:  # the request phase does not read it: ours
                model = self.chain.models.get(self.name) or self.chain.model
                self.gw.ledger.usage(Settlement(self.name, model, usage, self.status, now - self.started,
                                                self.first_byte - self.started if self.first_byte else None),
                                     key=self.chain.key)
        return reply

    def internal_error(self, phase: str) -> Reply:
        log.exception("internal error in attempt phase %s", phase)
        metrics.CLIENT_ERRORS.labels("internal").inc()
        client = self.chain.client if self.chain else "anthropic"
        return error_reply(client, 500, "the gateway failed to prepare this attempt")
