"""Tokens per minute (`rate_limits: [{..., tpm: N}]`): charged after the response, shared by replicas.

Like Envoy AI Gateway's `apply_on_stream_done`, a request is charged its tokens (input + output, as the
provider reported them) once its response has ended; unlike a rate-limit service on the request's path,
nothing is asked before a request leaves. Each limit has one counter per scope and UTC minute in the
budgets' store (`budgets.store`: SQLite for one gateway, Redis for replicas, which then share the
windows). `SpentWatch` reads the counters of the current minute and tells Envoy which keys and
providers are over, with the minute's end as their reset; Envoy refuses their next requests itself
(envoy/spent.lua). So a window can be overrun by what was in flight when it filled, plus what is admitted
until Envoy has the news (about a second). A store that errs fails open: counted, logged, let through.

Charged by the ledger wherever usage is settled (`Ledger.usage`): fast-path responses learned from
Envoy's access log, and the Python path's responses — so both paths fill the same windows.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .config import Config
from .config.rate_limits import RateLimit
from .observe import metrics
from .observe.budgets import Store, open_store

log = logging.getLogger("lunaroute")

WINDOW_S = 60
_TTL_S = 2 * WINDOW_S


@dataclass(frozen=True, slots=True)
class Window:
    """One tpm counter of the current minute: whose, and how full."""

    limit: RateLimit
    key: str  # the gateway key's name ("" for a provider limit)
    counter: str  # its key in the store
    resets: float  # epoch seconds


def minute(now: float) -> tuple[int, float]:
    start = int(now // WINDOW_S)
    return start, float((start + 1) * WINDOW_S)


class TokenWindows:
    """The configured tpm limits over the store; `charge` never blocks (a thread writes)."""

    def __init__(self, limits: list[RateLimit], keys: list[str], store: Store) -> None:
        self.limits = [(i, lim) for i, lim in enumerate(limits) if lim.tpm]
        self.keys = keys
        self.store = store
        self._queue: queue.Queue[list[tuple[str, float, int]]] = queue.Queue(maxsize=10_000)
        self._writer: threading.Thread | None = None

    @classmethod
    def of(cls, cfg: Config) -> TokenWindows | None:
        if not any(lim.tpm for lim in cfg.rate_limits):
            return None
        return cls(cfg.rate_limits, [k.name for k in cfg.access.keys], open_store(cfg.budgets.store,
                                                                                   cfg.budgets.timeout_ms / 1000))

    def _counter(self, index: int, scope: str, start: int) -> str:
        return f"lunaroute:tpm:{index}:{scope}:{start}"

    def matching(self, key: str, provider: str, model: str | None, now: float | None = None) -> list[Window]:
        """The windows a request of `key` to `provider` for `model` fills."""
        start, resets = minute(time.time() if now is None else now)
        out = []
        for index, lim in self.limits:
            if lim.key is not None:
                if key and lim.key in ("*", key):
                    out.append(Window(lim, key, self._counter(index, f"key={key}", start), resets))
            elif lim.provider == provider and (lim.model is None or fnmatchcase(model or "", lim.model)):
                out.append(Window(lim, "", self._counter(index, f"provider={provider}", start), resets))
        return out

    def current(self, now: float | None = None) -> list[Window]:
        """Every window of the current minute (for the watch: keys × key limits, and provider limits)."""
        start, resets = minute(time.time() if now is None else now)
        out = []
        for index, lim in self.limits:
            if lim.key is not None:
                for key in (self.keys if lim.key == "*" else [lim.key]):
                    out.append(Window(lim, key, self._counter(index, f"key={key}", start), resets))
            else:
                out.append(Window(lim, "", self._counter(index, f"provider={lim.provider}", start), resets))
        return out

    def charge(self, key: str, provider: str, model: str | None, usage: dict[str, int]) -> bool:
        """Queue the tokens of one response on its windows; whether any window concerned it."""
        tokens = usage.get("input", 0) + usage.get("output", 0)
        windows = self.matching(key, provider, model)
        if not windows or not tokens:
            return bool(windows)
        try:
            self._queue.put_nowait([(w.counter, float(tokens), _TTL_S) for w in windows])
        except queue.Full:
            metrics.RATE_LIMIT_STORE_ERRORS.labels("queue_full").inc()
            return True
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="lunaroute-tpm", daemon=True)
            self._writer.start()
        return True

    def flush(self, timeout_s: float = 1.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _write_loop(self) -> None:
        while True:
            items = self._queue.get()
            try:
                self.store.add(items)
            except Exception as exc:  # noqa: BLE001 - fail open, see the module docstring
                metrics.RATE_LIMIT_STORE_ERRORS.labels("charge").inc()
                log.warning("rate-limit store unreachable (%s); tokens not counted (fail open)", type(exc).__name__)
            finally:
                self._queue.task_done()
