"""Where the pools' knowledge is shared: the store the budgets use (`budgets.store`): a SQLite file
for one gateway (every worker), Redis for several replicas. One row per key: until when it is out,
whether it is revoked (and the secret file's fingerprint then), how many refusals in a row, the last
refusal, and the provider's last rate-limit headers. Calls are bounded by the budgets' timeout and
made off the request path (`state.PoolState`); a failing store is the caller's to survive.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import orjson


@dataclass(slots=True)
class KeyState:
    until: float = 0.0  # out until then (epoch seconds); 0: usable
    revoked: bool = False
    fingerprint: str = ""  # of the secret file when it was revoked
    strikes: int = 0  # refusals in a row
    last_status: int = 0
    last_at: float = 0.0
    rate: dict[str, str] = field(default_factory=dict)  # the provider's rate-limit headers, last seen

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | str) -> KeyState:
        data = orjson.loads(raw)
        return cls(**{k: data[k] for k in cls.__slots__ if k in data})  # type: ignore[attr-defined]


class PoolStore(Protocol):
    def load(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], KeyState]: ...

    def save(self, provider: str, key: str, state: KeyState) -> None: ...

    def add_usage(self, day: str, provider: str, key: str, requests: int, tokens: int) -> None: ...

    def usage(self, day: str, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]: ...

    def set_rate(self, provider: str, key: str, rate: dict[str, str]) -> None: ...

    def rates(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, str]]: ...


class SqlitePoolStore:
    """Beside the budgets, in their SQLite file (a table of its own)."""

    def __init__(self, path: str) -> None:
        self.path = str(Path(path).expanduser())
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=2, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS pool_keys (provider TEXT, key TEXT, state BLOB, "
                       "PRIMARY KEY (provider, key))")
            db.execute("CREATE TABLE IF NOT EXISTS pool_usage (day TEXT, provider TEXT, key TEXT, requests INTEGER, "
                       "tokens INTEGER, PRIMARY KEY (day, provider, key))")
            db.execute("CREATE TABLE IF NOT EXISTS pool_rates (provider TEXT, key TEXT, rate BLOB, "
                       "PRIMARY KEY (provider, key))")
            self._local.db = db
        return db

    def load(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], KeyState]:
        rows = self._db().execute("SELECT provider, key, state FROM pool_keys").fetchall()
        wanted = set(keys)
        return {(p, k): KeyState.decode(s) for p, k, s in rows if (p, k) in wanted}

    def save(self, provider: str, key: str, state: KeyState) -> None:
        self._db().execute("INSERT OR REPLACE INTO pool_keys VALUES (?, ?, ?)", (provider, key, state.encode()))

    def add_usage(self, day: str, provider: str, key: str, requests: int, tokens: int) -> None:
        self._db().execute("INSERT INTO pool_usage VALUES (?, ?, ?, ?, ?) ON CONFLICT (day, provider, key) DO UPDATE "
                           "SET requests = requests + excluded.requests, tokens = tokens + excluded.tokens",
                           (day, provider, key, requests, tokens))

    def usage(self, day: str, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
        rows = self._db().execute("SELECT provider, key, requests, tokens FROM pool_usage WHERE day = ?",
                                  (day,)).fetchall()
        wanted = set(keys)
        return {(p, k): (r, t) for p, k, r, t in rows if (p, k) in wanted}

    def set_rate(self, provider: str, key: str, rate: dict[str, str]) -> None:
        self._db().execute("INSERT OR REPLACE INTO pool_rates VALUES (?, ?, ?)", (provider, key, orjson.dumps(rate)))

    def rates(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
        wanted = set(keys)
        return {(p, k): orjson.loads(r) for p, k, r in self._db().execute("SELECT provider, key, rate FROM pool_rates")
                if (p, k) in wanted}


class RedisPoolStore:
    """One string per key (`lunaroute:pool:<provider>:<key>`), shared by every replica."""

    def __init__(self, url: str, timeout_s: float = 0.25) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    @staticmethod
    def _name(provider: str, key: str) -> str:
        return f"lunaroute:pool:{provider}:{key}"

    def load(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], KeyState]:
        if not keys:
            return {}
        values = self._redis.mget([self._name(p, k) for p, k in keys])
        return {pk: KeyState.decode(v) for pk, v in zip(keys, values, strict=True) if v is not None}

    def save(self, provider: str, key: str, state: KeyState) -> None:
        self._redis.set(self._name(provider, key), state.encode(), ex=7 * 86_400)

    @staticmethod
    def _usage_name(day: str, provider: str, key: str) -> str:
        return f"lunaroute:pool-usage:{day}:{provider}:{key}"

    def add_usage(self, day: str, provider: str, key: str, requests: int, tokens: int) -> None:
        name = self._usage_name(day, provider, key)
        with self._redis.pipeline() as pipe:
            pipe.hincrby(name, "requests", requests)
            pipe.hincrby(name, "tokens", tokens)
            pipe.expire(name, 3 * 86_400)
            pipe.execute()

    def usage(self, day: str, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
        with self._redis.pipeline() as pipe:
            for p, k in keys:
                pipe.hgetall(self._usage_name(day, p, k))
            found = pipe.execute()
        return {pk: (int(v.get(b"requests", 0)), int(v.get(b"tokens", 0))) for pk, v in zip(keys, found, strict=True)
                if v}

    def set_rate(self, provider: str, key: str, rate: dict[str, str]) -> None:
        self._redis.set(f"lunaroute:pool-rate:{provider}:{key}", orjson.dumps(rate), ex=86_400)

    def rates(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
        if not keys:
            return {}
        found = self._redis.mget([f"lunaroute:pool-rate:{p}:{k}" for p, k in keys])
        return {pk: orjson.loads(v) for pk, v in zip(keys, found, strict=True) if v is not None}


def open_pool_store(url: str, timeout_s: float = 0.25) -> PoolStore:
    """The budgets' store URL: `redis://…` (or rediss://, unix://), else a SQLite path."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisPoolStore(url, timeout_s)
    return SqlitePoolStore(url.removeprefix("sqlite://"))
