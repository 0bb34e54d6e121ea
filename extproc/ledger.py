"""The ledger: what each request cost, settled exactly once.

A request that Envoy sends through a fallback chain is seen twice in Python: by the request phase
(the downstream ext_proc stream, which decided the chain) and by each attempt (the provider cluster's
upstream ext_proc stream). The two may run in different worker processes, so who settles what is a
rule, written here, not shared memory:

- **The attempt owns what only it sees**: its provider's response status, and its provider's latency
  sample for `sort: latency | throughput`. A single-provider request is its own only attempt.
- **The reader owns the usage**: tokens, cache tokens, cost and the GenAI histograms are settled by
  whoever read the body that reached the client — the request phase when it meters (a budget or a
  record needs the usage; `Chain.metered` tells the attempts so), else the last attempt when it
  translated or sampled the response. Nobody reads a plain passthrough: it has no usage here.
- **The request phase owns budgets and records**, naming the provider that answered (Envoy's
  `x-lunaroute-provider` response header) and the model that provider was sent.
- **Envoy's fast path is settled after the fact** (`after_the_fact`): no worker saw the request, so the
  worker that receives its access-log entry (`extproc.metering`) counts it, settles its usage as the
  reader would, and charges the budgets it draws on — nothing was reserved before it left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson

from .observe import metrics
from .observe.budgets import Budgets, Reservation
from .observe.labels import ModelLabels
from .observe.pricing import PriceTable
from .observe.recording import Draft
from .observe.sessions import RecordWriter
from .rate_windows import TokenWindows
from .routing import Observed
from .wire import TPM_REFUSAL as TPM

log = logging.getLogger("lunaroute")


@dataclass(slots=True)
class Settlement:
    """One finished request (or attempt) as the ledger needs it."""

    provider: str
    model: str | None  # the model the provider was sent
    usage: dict[str, int] = field(default_factory=dict)
    status: int = 0
    duration_s: float = 0.0
    ttft_s: float | None = None
    overhead_s: float | None = None  # the request phase's own time (None: an attempt's or Envoy's settling)


class Ledger:
    """Built once per worker (`Gateway.ledger`); every settling goes through it."""

    def __init__(self, prices: PriceTable, labels: ModelLabels, observed: Observed, budgets: Budgets | None,
                 recorder: RecordWriter | None, windows: TokenWindows | None = None) -> None:
        self.prices = prices
        self.labels = labels
        self.observed = observed
        self.budgets = budgets
        self.recorder = recorder
        self.windows = windows  # tokens-per-minute windows (`rate_windows`), when configured

    # -- the attempt's part ------------------------------------------------------------------------

    @staticmethod
    def status(route: str, provider: str, status: int) -> None:
        metrics.RESPONSES.labels(route, provider, str(status)).inc()

    def latency(self, provider: str, ttfb_s: float, output_tokens: int, duration_s: float) -> None:
        self.observed.observe(provider, ttfb_s, output_tokens, duration_s)

    # -- the reader's part -------------------------------------------------------------------------

    def usage(self, s: Settlement, read: bool = True, key: str = "", log_line: bool = True) -> float | None:
        """Tokens, cache tokens, cost and the GenAI histograms of the response `s` describes, the same
        by gateway `key`, and its tokens in the key's and provider's tokens-per-minute windows; returns
        its cost (None when unpriced or nothing was reported). `read`: the body was read (else only
        the gateway's overhead is known). `log_line`: the `usage …` log line (the fast path's requests
        are in Envoy's access log instead: one line per request is enough)."""
        usage = s.usage
        cost = self.prices.cost(s.model, usage, s.provider) if usage else None
        if usage:
            for counter, label, kind in ((metrics.TOKENS, "input", "input"), (metrics.TOKENS, "output", "output"),
                                         (metrics.CACHE_TOKENS, "read", "cache_read"),
                                         (metrics.CACHE_TOKENS, "write", "cache_write")):
                if usage.get(kind):
                    counter.labels(s.provider, label).inc(usage[kind])
            if log_line:
                log.info("usage lunaroute:%s input=%d output=%d cache_read=%d cache_write=%d", s.provider,
                         usage.get("input", 0), usage.get("output", 0), usage.get("cache_read", 0),
                         usage.get("cache_write", 0))
        metrics.observe_exchange(s.provider, self.labels.label(s.model) if read else "", usage, cost, s.duration_s,
                                 s.ttft_s, s.overhead_s, read=read)
        if usage:
            self.per_key(key, s, cost)
            if self.windows is not None:
                self.windows.charge(key, s.provider, s.model, usage)
        return cost

    # -- Envoy's fast path, learned from its access log --------------------------------------------

    def after_the_fact(self, s: Settlement, route: str, key: str, refused: str = "") -> float | None:
        """One fast-path request Envoy served and logged: counted once (`path="fast"`), its usage
        settled, and the budgets of its gateway key and provider charged with what it used (after the
        response: a budget can be overrun by what was in flight when it ran out). `refused`: the spent
        budget Envoy refused it for (nothing reached the provider). Returns its cost."""
        metrics.REQUESTS.labels(route, s.provider, path=metrics.FAST).inc()
        metrics.RESPONSES.labels(route, s.provider, str(s.status), path=metrics.FAST).inc()
        if refused == TPM:
            metrics.RATE_LIMITED.labels(TPM).inc()
            return None
        if refused:
            metrics.BUDGET_REJECTIONS.labels(refused).inc()
            return None
        cost = self.usage(s, key=key, log_line=False)
        if self.budgets is not None:
            draws = self.budgets.draws(key or None, s.provider, None)
            if draws and (s.usage or s.status >= 400):
                used = s.usage.get("input", 0) + s.usage.get("output", 0)  # cache reads and writes are in the input
                charge = Reservation(draws, 0, 0.0, 0, key or None, s.provider)  # nothing was reserved
                self.budgets.settle(charge, used, cost or 0.0, provider=s.provider)
        return cost

    def per_key(self, key: str, s: Settlement, cost: float | None) -> None:
        """Tokens and cost by gateway key (key names are the operator's, so bounded), provider and model."""
        model = self.labels.label(s.model)
        for kind in ("input", "output", "cache_read", "cache_write"):
            if s.usage.get(kind):
                metrics.KEY_TOKENS.labels(key, s.provider, model, kind).inc(s.usage[kind])
        if cost:
            metrics.KEY_COST.labels(key, s.provider, model).inc(cost)

    # -- the request phase's part ------------------------------------------------------------------

    def budget(self, reservation: Reservation | None, s: Settlement, cost: float | None) -> None:
        """Replace the reservation by what the provider that answered reported (its input — cache reads
        and writes included — and output), charged to that provider's counters; by the input estimate
        when it reported nothing (an interrupted stream), by nothing when it refused the request."""
        if reservation is None or self.budgets is None:
            return
        usage = s.usage
        if usage:
            tokens: float | None = usage.get("input", 0) + usage.get("output", 0)
            usd: float | None = cost or 0.0
        elif s.status >= 400:
            tokens, usd = 0, 0.0
        else:
            tokens = usd = None
        self.budgets.settle(reservation, tokens, usd, provider=s.provider)

    def record(self, draft: Draft | None, s: Settlement, outcome: str, cost: float | None) -> None:
        if draft is None or self.recorder is None:
            return
        draft.meta["provider"] = s.provider
        draft.meta["sent_model"] = s.model
        self.recorder.submit(draft.finish(status=s.status, outcome=outcome, usage=s.usage, cost_usd=cost,
                                          overhead_ms=round((s.overhead_s or 0.0) * 1000, 3)))

    @staticmethod
    def done_line(s: Settlement, cost: float | None, outcome: str, key: str, client: str, path: str) -> None:
        log.info("done %s", orjson.dumps({
            "provider": s.provider, "model": s.model, "key": key or None, "client": client, "path": path,
            "status": s.status, "outcome": outcome, "usage": s.usage, "cost_usd": cost,
            "duration_ms": round(s.duration_s * 1000, 3),
            "ttft_ms": None if s.ttft_s is None else round(s.ttft_s * 1000, 3),
            "overhead_ms": None if s.overhead_s is None else round(s.overhead_s * 1000, 3)}).decode())
