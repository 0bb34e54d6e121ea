"""Which budgets are spent and which token windows are full, told to Envoy so it refuses requests itself.

The fast path is charged after the response (`ledger.after_the_fact`), so nothing stops its next
request but Envoy. Every worker with budgets or tpm limits runs one `SpentWatch` thread: after a
fast-path charge (or every `every_s`, so spending by other workers and replicas sharing the store is
seen too) it asks the store which scopes have a spent counter or a full window and, when that set
changed, rewrites the file Envoy watches (`envoy_config.spent`). Workers of one gateway compute the
same set from one store, so whichever writes last writes what the others would.

The overrun this allows is bounded: what the requests already in flight when a budget ran out cost,
plus what is admitted until Envoy has the new file (the access log's flush interval, 1 s, plus this
thread's pass).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from .config import Config
from .envoy_config.fast_path import fast_settings
from .envoy_config.spent import SpentScope, write_spent
from .observe import metrics
from .observe.budgets import Budgets, Refusal
from .rate_windows import TokenWindows
from .wire import TPM_REFUSAL as TPM

log = logging.getLogger("lunaroute")

# The supervisor tells the workers where Envoy watches the spent file (beside the gate's).
SPENT_FILE_ENV = "LUNAROUTE_SPENT_FILE"


def fast_targets(cfg: Config) -> list[str]:
    """Providers the fast path can send to (only their requests are refused by Envoy)."""
    out: dict[str, None] = {}
    for entry in fast_settings(cfg)["paths"].values():
        for target in [*(r.get("target") for r in entry["rules"]), entry["default"]]:
            if target:
                out.setdefault(target, None)
    return list(out)


def full_windows(windows: TokenWindows) -> list[SpentScope]:
    """The token windows of the current minute that are full (blocking: store reads)."""
    out = []
    for w in windows.current():
        used, cap = windows.store.used(w.counter), w.limit.tpm or 0
        if used < cap:
            continue
        message = (f"the rate limit of {cap} tokens per minute ({w.limit.where}) is reached ({int(used)} used); "
                   "retry after the number of seconds in the retry-after header")
        if w.key:
            out.append(SpentScope(w.key, "*", TPM, message, w.resets, limit=cap))
        else:
            out.append(SpentScope("*", w.limit.provider or "", TPM, message, w.resets, w.limit.model, cap))
    return out


def spent_scopes(budgets: Budgets, keys: list[str], providers: list[str]) -> list[SpentScope]:
    """The (key, provider) scopes with a spent counter, each with the first spent budget's 429 message
    (blocking: store reads). Without gateway keys `keys` is [""]."""
    assert budgets.store is not None
    used: dict[str, float] = {}
    out = []
    for key in keys:
        for provider in providers:
            for draw in budgets.draws(key or None, provider, None):
                if draw.key not in used:
                    used[draw.key] = budgets.store.used(draw.key)
                if used[draw.key] >= draw.cap:
                    lim = draw.limit
                    refusal = Refusal(lim.name, used[draw.key], draw.cap, draw.unit, lim.period, draw.resets)
                    out.append(SpentScope(key, provider, lim.name, refusal.message(), draw.resets))
                    break
    return out


class SpentWatch(threading.Thread):
    """Keeps Envoy's spent file true (see the module docstring); `poke()` after a charge."""

    def __init__(self, cfg: Config, budgets: Budgets | None, windows: TokenWindows | None, path: Path,
                 every_s: float = 1.0) -> None:
        super().__init__(name="lunaroute-spent", daemon=True)
        self.budgets, self.windows, self.path, self.every_s = budgets, windows, path, every_s
        self.keys = [k.name for k in cfg.access.keys] or [""]
        self.providers = fast_targets(cfg)
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._written: list[SpentScope] | None = None

    def poke(self) -> None:
        self._poke.set()

    def run(self) -> None:
        while not self._stop.is_set():
            self._poke.wait(self.every_s)
            self._poke.clear()
            if self._stop.is_set():
                return
            for queued in (self.budgets, self.windows):  # what was just charged is in the store first
                if queued is not None:
                    queued.flush(timeout_s=1.0)
            self.once()

    def once(self) -> None:
        try:
            scopes = spent_scopes(self.budgets, self.keys, self.providers) if self.budgets is not None else []
            scopes += full_windows(self.windows) if self.windows is not None else []
        except Exception as exc:  # noqa: BLE001 - a store outage must not stop the watch (fail open)
            metrics.RATE_LIMIT_STORE_ERRORS.labels("watch").inc()
            log.warning("budget store unreachable (%s); spent budgets and full windows not refreshed, limits "
                        "fail open", type(exc).__name__)
            scopes = []  # fail open: nothing is refused while the store cannot say
        if scopes == self._written:
            return
        try:
            write_spent(self.path, scopes)
        except OSError as exc:
            log.warning("could not write %s: %s", self.path, exc)
            return
        if scopes:
            log.info("spent budgets refused by Envoy: %s", ", ".join(f"{s.key or '-'}/{s.provider}" for s in scopes))
        self._written = scopes

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
