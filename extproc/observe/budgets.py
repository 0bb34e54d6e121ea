"""Daily token budgets per provider, shared by every worker (and every replica, with Redis).

A provider whose budget for the day (UTC) is spent is taken out of routing: a fallback chain skips
it, and a request that has nowhere else to go gets a 429 in the client's dialect. Usage is charged
from what the provider reports in its responses, translated or not.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from ..config import BudgetsConfig

_KEY_TTL_S = 3 * 24 * 3600  # a day's counter outlives the day a little, then Redis forgets it


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


class Store(Protocol):
    def add(self, provider: str, day: str, tokens: int) -> None: ...
    def used(self, provider: str, day: str) -> int: ...


class SqliteStore:
    """One small file; WAL mode so the worker processes of one gateway share it safely."""

    def __init__(self, path: str) -> None:
        self.path = Path(os.path.expanduser(path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS usage (provider TEXT, day TEXT, tokens INTEGER NOT NULL,"
                       " PRIMARY KEY (provider, day))")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def add(self, provider: str, day: str, tokens: int) -> None:
        self._db().execute("INSERT INTO usage VALUES (?, ?, ?) ON CONFLICT(provider, day) "
                           "DO UPDATE SET tokens = tokens + excluded.tokens", (provider, day, tokens))

    def used(self, provider: str, day: str) -> int:
        row = self._db().execute("SELECT tokens FROM usage WHERE provider = ? AND day = ?",
                                 (provider, day)).fetchone()
        return int(row[0]) if row else 0


class RedisStore:
    """Shared across replicas: one counter per provider and day."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    @staticmethod
    def _key(provider: str, day: str) -> str:
        return f"lunaroute:budget:{provider}:{day}"

    def add(self, provider: str, day: str, tokens: int) -> None:
        key = self._key(provider, day)
        with self._redis.pipeline() as pipe:
            pipe.incrby(key, tokens)
            pipe.expire(key, _KEY_TTL_S)
            pipe.execute()

    def used(self, provider: str, day: str) -> int:
        value = self._redis.get(self._key(provider, day))
        return int(value) if value else 0


def open_store(url: str) -> Store:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    return SqliteStore(url.removeprefix("sqlite://") if url.startswith("sqlite://") else url)


class Budgets:
    """The gateway's view of the budgets: which providers are spent, and charging usage.

    A store that cannot be reached fails open (logged by the caller's metrics): a budget outage must
    not take every request down with it.
    """

    def __init__(self, cfg: BudgetsConfig, store: Store | None = None) -> None:
        self.limits = dict(cfg.daily_tokens)
        self.store = store or open_store(cfg.store)

    def budgeted(self, provider: str) -> bool:
        return provider in self.limits

    def spent(self, provider: str) -> str | None:
        """Why `provider` may not be used today, or None."""
        limit = self.limits.get(provider)
        if limit is None:
            return None
        try:
            used = self.store.used(provider, today())
        except Exception:  # noqa: BLE001 - fail open, see the class docstring
            return None
        if used < limit:
            return None
        return (f"the daily token budget of provider {provider!r} is spent ({used} of {limit} tokens); "
                "it resets at 00:00 UTC")

    def charge(self, provider: str, tokens: int) -> None:
        if provider in self.limits and tokens > 0:
            with contextlib.suppress(Exception):  # fail open, see the class docstring
                self.store.add(provider, today(), tokens)
