"""What a worker builds once from the config, shared by every exchange it serves.

Its own module so that the request phase (`exchange`) and the attempts of a fallback chain
(`attempts`) both depend on it and not on each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .config import Config, Provider
from .ledger import Ledger
from .observe.budgets import Budgets
from .observe.labels import ModelLabels
from .observe.pii import Redactor
from .observe.pricing import DEFAULT_PRICES, Price, PriceTable
from .observe.sessions import RecordWriter
from .pools.state import PoolState
from .rate_windows import TokenWindows
from .routing import Observed, Router


class Gateway:
    """Config, router, price table, budgets, recorder and ledger of one worker."""

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
        self.ledger = Ledger(self.prices, model_labels(cfg), self.observed, self.budgets, self.recorder,
                             TokenWindows.of(cfg))
        self._healthy = healthy or (lambda: True)
        self._ticks = 0
        self.pools = PoolState(cfg)  # credential pools: start keys and cooldowns (extproc.pools)
        self.pools.start()

    def sample(self) -> bool:
        self._ticks += 1
        return self._ticks % self.SAMPLE_EVERY == 0

    def ready(self) -> bool:
        return bool(self._healthy())

    def close(self) -> None:
        """Flush what is queued for the session store and the budgets (SIGTERM)."""
        self.pools.stop()
        if self.recorder is not None:
            self.recorder.close()
        if self.budgets is not None:
            self.budgets.flush()

    def provider(self, name: str) -> Provider:
        return self.cfg.providers[name]


def model_labels(cfg: Config) -> ModelLabels:
    """The models the operator named, and the globs a model must match to be a label of its own."""
    known = [m for p in cfg.providers.values() for m in ([p.model] if p.model else []) + p.models]
    globs = [r.model for r in cfg.routing.rules if r.model] + list(cfg.pricing) + [g for g, _ in DEFAULT_PRICES]
    return ModelLabels(known, globs)
