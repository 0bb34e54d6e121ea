"""Budgets that hold: spending limits in USD or tokens per gateway key, provider and session, over a
UTC day or month, shared by every worker (a SQLite file) or every replica (Redis).

Reserve, then settle. Before a request leaves, an estimate (its input at about four bytes a token,
plus its output cap — `max_tokens` as the provider will get it, `RESERVED_OUTPUT_TOKENS` when the
request names none) is reserved on every counter it draws on, in one
atomic step that also checks them: two concurrent requests cannot both take the last of a budget.
A counter that is spent refuses; so does one the estimate would overrun, unless nothing is spent
yet (a request larger than a whole budget may run once). When the response has ended — completed,
cut off or abandoned — the reservation is replaced by what the provider reported (input, output,
cache writes; cache reads are in the input), or, when nothing was reported, by the input estimate —
charged to the provider that answered: a fallback chain's reservation was made on its first provider,
and is moved to the one that served it. A later attempt of a chain checks its own provider's counters
first (`check`) and is refused when they are spent, so Envoy moves on to the next provider.

Never on the event loop: reserving runs in a thread and is awaited with `budgets.timeout_ms`;
settling goes to a queue drained by one thread. A store that errs or is slow fails open — the
request goes on, `lunaroute_budget_store_errors_total` counts it — because a budget outage must not
take every stream down with it. A request let through so is still charged when it settles, if the
store is back by then; a budget can be overrun by what was sent while its store was unreachable.
"""

from __future__ import annotations

import calendar
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Protocol

from ..config import BudgetLimit, BudgetsConfig
from . import metrics

log = logging.getLogger("lunaroute")

RESERVED_OUTPUT_TOKENS = 4096
_TTL_GRACE_S = 86400  # a period's counter outlives its period a little, then Redis forgets it


def period_bounds(period: str, now: float) -> tuple[str, float]:
    """The period's id (`2026-12-01`, `2026-12`) and when it resets (epoch seconds, UTC)."""
    t = time.gmtime(now)
    if period == "month":
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        return f"{t.tm_year:04d}-{t.tm_mon:02d}", float(calendar.timegm((year, month, 1, 0, 0, 0)))
    start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", float(start + 86400)


@dataclass(frozen=True, slots=True)
class Draw:
    """One counter a request draws on."""

    limit: BudgetLimit
    key: str
    resets: float

    @property
    def unit(self) -> str:
        return "usd" if self.limit.usd is not None else "tokens"

    @property
    def cap(self) -> float:
        return float(self.limit.usd if self.limit.usd is not None else self.limit.tokens or 0)


@dataclass(slots=True)
class Reservation:
    draws: list[Draw]
    tokens: int
    usd: float
    input_tokens: int
    key: str | None = None
    provider: str = ""
    session: str | None = None
    checked: bool = False  # the server asked the store
    reserved: bool = False  # the store took it (not failed open)
    settled: bool = False

    def amount(self, draw: Draw, tokens: float, usd: float) -> float:
        return usd if draw.unit == "usd" else tokens


@dataclass(frozen=True, slots=True)
class Refusal:
    """A spent budget: what the 429 says."""

    name: str
    used: float
    cap: float
    unit: str
    period: str
    resets: float

    def message(self) -> str:
        amount = (f"${self.used:.4f} of ${self.cap:g}" if self.unit == "usd"
                  else f"{int(self.used)} of {int(self.cap)} tokens")
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.resets))
        return f"the budget {self.name!r} is spent ({amount} this {self.period}); it resets at {reset}"


class Store(Protocol):
    def reserve(self, items: Sequence[tuple[str, float, float, int]]) -> tuple[int, float] | None:
        """Atomically: if every (key, amount, cap, ttl) fits, add all amounts and return None; else
        return the index of the first that does not fit and what it has used."""

    def add(self, items: Sequence[tuple[str, float, int]]) -> None: ...

    def used(self, key: str) -> float: ...


def _fits(used: float, amount: float, cap: float) -> bool:
    return used < cap and (used + amount <= cap or used == 0)


class SqliteStore:
    """One small file; WAL mode and BEGIN IMMEDIATE, so the worker processes of one gateway share it
    and a check-and-reserve is one transaction."""

    def __init__(self, path: str) -> None:
        self.path = Path(os.path.expanduser(path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().execute("CREATE TABLE IF NOT EXISTS budget (key TEXT PRIMARY KEY, used REAL NOT NULL, "
                           "expires REAL NOT NULL)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=2, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def reserve(self, items: Sequence[tuple[str, float, float, int]]) -> tuple[int, float] | None:
        db = self._db()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            for i, (key, amount, cap, _ttl) in enumerate(items):
                used = self._used(db, key, now)
                if not _fits(used, amount, cap):
                    db.execute("ROLLBACK")
                    return i, used
            self._add(db, [(k, a, t) for k, a, _c, t in items], now)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return None

    def add(self, items: Sequence[tuple[str, float, int]]) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        self._add(db, items, time.time())
        db.execute("COMMIT")

    def used(self, key: str) -> float:
        return self._used(self._db(), key, time.time())

    @staticmethod
    def _used(db: sqlite3.Connection, key: str, now: float) -> float:
        row = db.execute("SELECT used FROM budget WHERE key = ? AND expires > ?", (key, now)).fetchone()
        return float(row[0]) if row else 0.0

    @staticmethod
    def _add(db: sqlite3.Connection, items: Sequence[tuple[str, float, int]], now: float) -> None:
        for key, amount, ttl in items:
            db.execute("INSERT INTO budget VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET used = CASE WHEN "
                       "expires > ? THEN used + excluded.used ELSE excluded.used END, expires = excluded.expires",
                       (key, amount, now + ttl, now))


_RESERVE_LUA = """
for i = 1, #KEYS do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  local amount, cap = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  if not (used < cap and (used + amount <= cap or used == 0)) then
    return {i, tostring(used)}
  end
end
for i = 1, #KEYS do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[3 * i - 2])
  redis.call('EXPIRE', KEYS[i], ARGV[3 * i])
end
return false
"""


class RedisStore:
    """Shared by replicas: one float counter per budget, scope and period; check-and-reserve is one
    Lua script (atomic in Redis). Short socket timeouts: an unreachable Redis costs a thread at most
    that long, never the event loop."""

    def __init__(self, url: str, timeout_s: float = 0.25) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._reserve = self._redis.register_script(_RESERVE_LUA)

    def reserve(self, items: Sequence[tuple[str, float, float, int]]) -> tuple[int, float] | None:
        args: list[float | int] = []
        for _key, amount, cap, ttl in items:
            args += [amount, cap, ttl]
        out = self._reserve(keys=[k for k, *_ in items], args=args)
        if not out:
            return None
        return int(out[0]) - 1, float(out[1])

    def add(self, items: Sequence[tuple[str, float, int]]) -> None:
        with self._redis.pipeline() as pipe:
            for key, amount, ttl in items:
                pipe.incrbyfloat(key, amount)
                pipe.expire(key, ttl)
            pipe.execute()

    def used(self, key: str) -> float:
        value = self._redis.get(key)
        return float(value) if value else 0.0


def open_store(url: str, timeout_s: float = 0.25) -> Store:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, timeout_s)
    return SqliteStore(url.removeprefix("sqlite://") if url.startswith("sqlite://") else url)


def _matches(glob: str | None, value: str | None) -> bool:
    return glob is None or (value is not None and fnmatchcase(value, glob))


@dataclass
class Budgets:
    """The configured limits and their store; `plan` is pure, `reserve` and `settle` do the I/O."""

    cfg: BudgetsConfig
    store: Store | None = None
    limits: list[BudgetLimit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.limits = self.cfg.all_limits()
        self.timeout_s = self.cfg.timeout_ms / 1000
        if self.store is None:
            self.store = open_store(self.cfg.store, self.timeout_s)
        self._settling: queue.Queue[tuple[Reservation, list[Draw], float, float]] = queue.Queue(maxsize=10_000)
        self._settler: threading.Thread | None = None
        # Reservations are awaited from the event loop in these threads, never in the loop's own.
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lunaroute-budget")
        self._down_until = 0.0  # after an error the store is skipped for a second: fail open at once

    def concerns(self, key: str | None, provider: str | None = None) -> bool:
        """Whether some limit may concern requests of this gateway key (and provider, when named)."""
        return any(_matches(lim.key, key) and (provider is None or _matches(lim.provider, provider))
                   for lim in self.limits)

    def draws(self, key: str | None, provider: str, session: str | None, now: float | None = None) -> list[Draw]:
        """The counters a request of `key` to `provider` in `session` draws on."""
        now = time.time() if now is None else now
        out = []
        for lim in self.limits:
            if not (_matches(lim.key, key) and _matches(lim.provider, provider) and _matches(lim.session, session)):
                continue
            scope = ":".join(f"{dim}={value}" for dim, glob, value in (
                ("key", lim.key, key), ("provider", lim.provider, provider), ("session", lim.session, session))
                if glob is not None)
            period, resets = period_bounds(lim.period, now)
            out.append(Draw(lim, f"lunaroute:budget:{lim.name}:{scope}:{period}", resets))
        return out

    def plan(self, key: str | None, provider: str, session: str | None, tokens: int, usd: float,
             input_tokens: int, now: float | None = None) -> Reservation | None:
        """The counters this request draws on and its estimate, or None when no limit concerns it."""
        draws = self.draws(key, provider, session, now)
        return Reservation(draws, tokens, usd, input_tokens, key, provider, session) if draws else None

    def check(self, key: str | None, provider: str, session: str | None, skip: frozenset[str] = frozenset()
              ) -> Refusal | None:
        """Read-only: the first spent counter of `provider` for this key and session (not in `skip`:
        counters the request phase already reserved), or None. Blocking: run it in a thread. Fails
        open, counted."""
        if time.monotonic() < self._down_until:
            metrics.BUDGET_STORE_ERRORS.labels("check").inc()
            return None
        for draw in self.draws(key, provider, session):
            if draw.key in skip:
                continue
            try:
                assert self.store is not None
                used = self.store.used(draw.key)
            except Exception as exc:  # noqa: BLE001 - fail open, see the module docstring
                self._down_until = time.monotonic() + 1.0
                metrics.BUDGET_STORE_ERRORS.labels("check").inc()
                log.warning("budget store unreachable (%s); attempt let through (fail open)", type(exc).__name__)
                return None
            if used >= draw.cap:
                metrics.BUDGET_REJECTIONS.labels(draw.limit.name).inc()
                return Refusal(draw.limit.name, used, draw.cap, draw.unit, draw.limit.period, draw.resets)
        return None

    def reserve(self, res: Reservation) -> Refusal | None:
        """Check and reserve (blocking: run it in a thread). Fails open, counted."""
        now = time.time()
        items = [(d.key, res.amount(d, res.tokens, res.usd), d.cap, int(d.resets - now) + _TTL_GRACE_S)
                 for d in res.draws]
        if time.monotonic() < self._down_until:
            metrics.BUDGET_STORE_ERRORS.labels("reserve").inc()
            return None
        try:
            assert self.store is not None
            failed = self.store.reserve(items)
        except Exception as exc:  # noqa: BLE001 - fail open, see the module docstring
            self._down_until = time.monotonic() + 1.0
            metrics.BUDGET_STORE_ERRORS.labels("reserve").inc()
            log.warning("budget store unreachable (%s); requests let through for 1 s (fail open)",
                        type(exc).__name__)
            return None
        if failed is None:
            res.reserved = True
            return None
        index, used = failed
        draw = res.draws[index]
        metrics.BUDGET_REJECTIONS.labels(draw.limit.name).inc()
        return Refusal(draw.limit.name, used, draw.cap, draw.unit, draw.limit.period, draw.resets)

    def settle(self, res: Reservation, tokens: float | None, usd: float | None, provider: str | None = None) -> None:
        """Replace the reservation by what was used (None: nothing reported; the input estimate is
        charged), on the counters of `provider` — the one that answered — when it is not the one the
        reservation was made for. Never blocks: the settling thread writes it."""
        if res.settled:
            return
        res.settled = True
        if tokens is None:
            tokens, usd = res.input_tokens, res.usd * res.input_tokens / max(res.tokens, 1)
        charged = res.draws if not provider or provider == res.provider else self.draws(res.key, provider, res.session)
        try:
            self._settling.put_nowait((res, charged, float(tokens), float(usd or 0.0)))
        except queue.Full:
            metrics.BUDGET_STORE_ERRORS.labels("settle_queue_full").inc()
            return
        if self._settler is None:
            self._settler = threading.Thread(target=self._settle_loop, name="lunaroute-budgets", daemon=True)
            self._settler.start()

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until what is queued is written: SIGTERM, and tests."""
        deadline = time.monotonic() + timeout_s
        while self._settling.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _settle_loop(self) -> None:
        while True:
            res, charged, tokens, usd = self._settling.get()
            now = time.time()
            # What was reserved comes off the reserved counters, what was used goes on the charged ones
            # (the same ones, unless a fallback provider answered): one signed amount per counter.
            amounts: dict[str, tuple[float, int]] = {}
            for sign, draws, t, u in ((-1, res.draws if res.reserved else [], res.tokens, res.usd),
                                      (1, charged, tokens, usd)):
                for d in draws:
                    before, _ = amounts.get(d.key, (0.0, 0))
                    amounts[d.key] = (before + sign * res.amount(d, t, u), int(d.resets - now) + _TTL_GRACE_S)
            try:
                assert self.store is not None
                self.store.add([(k, a, ttl) for k, (a, ttl) in amounts.items() if a])
            except Exception:  # noqa: BLE001 - fail open, see the module docstring
                metrics.BUDGET_STORE_ERRORS.labels("settle").inc()
                log.warning("budget store unreachable; usage not settled", exc_info=True)
            finally:
                self._settling.task_done()
