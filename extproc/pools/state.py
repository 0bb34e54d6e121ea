"""A worker's view of its credential pools: which keys are out, the start cluster of a request, and
the lessons of refused attempts — kept in the shared store and handed to Envoy in the pool file.

The request path only reads memory (`start_cluster`) and records lessons in memory (`observe`); a
thread does the rest every `REFRESH_S`: it reads the refused attempts Envoy logged (the ones it
retried on the next key, which no worker sees, and the fast path's), saves lessons to the store,
reloads every key's state from it (other workers', other replicas'), and rewrites the pool file when
the set of unusable keys changed. A store that fails is forgotten until it answers again: every key
counts as usable, and the pick is the plain hash (fail open).
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import orjson

from ..config import Config, PoolKey
from ..envoy_admin import stats
from ..envoy_config.pools import ATTEMPTS_LOG, POOLS_FILE, direct_cluster, pooled, write_pools
from ..wire import cluster_name, pool_cluster
from . import metrics
from .cooldown import RATE_HEADERS, learn
from .pick import conversation_id, start_key
from .store import KeyState, PoolStore, open_pool_store

log = logging.getLogger("lunaroute")

REFRESH_S = 0.5
STATS_EVERY_S = 5.0
RATES_PER_TICK = 8
_SUCCESS = re.compile(rb'"status":[123]\d\d[,}]')
ATTEMPTS_LOG_MAX_BYTES = 16 << 20  # then the stats leader empties Envoy's attempt log
_KEY_STATS = r"^cluster\.provider_.*\.upstream_rq_total$"  # no "#" in a URL: the names are looked up below
# An env-var key cannot change without a restart; a revoked one is retried after `max_cooldown_s`.
_ENV_FINGERPRINT = "env"
# How the pool file says "revoked" to pools.lua: out until 2100.
REVOKED_UNTIL = 4_102_444_800.0


class AllKeysOut(Exception):
    """Every key of the pool is cooling or revoked; `retry_after`: seconds until the first is back."""

    def __init__(self, provider: str, retry_after: int) -> None:
        super().__init__(provider)
        self.provider, self.retry_after = provider, retry_after


def fingerprint(key: PoolKey) -> str:
    """What changes when a key's secret is rewritten (the file's identity, never its content)."""
    if not key.api_key_file:
        return _ENV_FINGERPRINT
    try:
        st = os.stat(os.path.expanduser(key.api_key_file))
    except OSError:
        return "missing"
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


def _changed_since(key: PoolKey, at: float) -> bool:
    if not key.api_key_file:
        return False
    try:
        return os.stat(os.path.expanduser(key.api_key_file)).st_mtime > at
    except OSError:
        return False


class PoolState:
    def __init__(self, cfg: Config, store: PoolStore | None = None, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.pools = {name: p.pool for name, p in pooled(cfg).items()}
        self.keys = {(name, k.name): k for name, keys in self.pools.items() for k in keys}
        self.states: dict[tuple[str, str], KeyState] = {}
        self._store = store
        self._pending: queue.SimpleQueue[Callable[[PoolStore], None]] = queue.SimpleQueue()  # store writes
        self._lock = threading.Lock()
        state_dir = cfg.pools.state_dir
        self.file = Path(state_dir) / POOLS_FILE if state_dir else None
        self.attempts = Path(state_dir) / ATTEMPTS_LOG if state_dir else None
        self._offset: int | None = None
        self._store_ok = True
        self._written: dict[str, dict[str, float]] | None = None  # what the pool file says now
        self._stats_due = 0.0
        self._seen: dict[tuple[str, str], int] = {}
        self._lock_file: IO[str] | None = None
        self._rates: dict[tuple[str, str], dict[str, str]] = {}  # the providers' last rate-limit headers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def store(self) -> PoolStore:
        if self._store is None:
            self._store = open_pool_store(self.cfg.budgets.store, self.cfg.budgets.timeout_ms / 1000)
        return self._store

    # -- the request path ------------------------------------------------------------------------

    def usable(self, provider: str, key: PoolKey, now: float) -> bool:
        state = self.states.get((provider, key.name))
        if state is None:
            return True
        if state.revoked and state.fingerprint != _ENV_FINGERPRINT:
            return fingerprint(key) != state.fingerprint  # rewritten: back in the pool
        return state.until <= now

    def start_cluster(self, provider: str, headers: Mapping[str, str], doc: Mapping | None) -> str:
        """The cluster a request to `provider` goes to: a pooled provider's start cluster for this
        conversation (the same pick pools.lua makes); raises AllKeysOut when no key is usable."""
        keys = self.pools.get(provider)
        if not keys:
            return cluster_name(provider)
        now = self.clock()
        usable = [(k.name, k.weight) for k in keys if self.usable(provider, k, now)]
        if not usable:
            soonest = min(self.states[(provider, k.name)].until for k in keys)
            raise AllKeysOut(provider, max(1, int(min(soonest, now + self.cfg.pools.max_cooldown_s) - now + 0.999)))
        key = start_key(usable, conversation_id(headers, doc) or "")
        assert key is not None
        metrics.POOL_STARTS.labels(provider, key).inc()
        return pool_cluster(provider, [k.name for k in keys], key)

    def observe(self, provider: str, key: str, status: int, headers: Mapping[str, str],
                at: float | None = None) -> None:
        """What one answer of `key` (given at `at`, default now) taught: a cooldown or a revocation
        (kept here at once, saved to the store by the thread), or, after refusals, that the key works
        again. A refusal older than the key file's last change was for the key it replaced."""
        pool_key = self.keys.get((provider, key))
        if pool_key is None:
            return
        now = at or self.clock()
        if at is not None and status >= 400 and _changed_since(pool_key, at):
            return
        with self._lock:
            state = self.states.get((provider, key)) or KeyState()
            rate = {h: headers[h] for h in RATE_HEADERS if h in headers}
            if status < 400:
                if not (state.strikes or state.until):
                    return
                new = KeyState(rate=rate or state.rate)
            else:
                lesson = learn(status, headers, now, state.strikes, self.cfg.pools.backoff_s,
                               self.cfg.pools.max_cooldown_s)
                if lesson is None:
                    return
                metrics.POOL_REFUSALS.labels(provider, key, str(status)).inc()
                known = state.until > now and lesson.until <= state.until + 1 and not lesson.revoked
                if known:  # the same refusal, seen twice (Envoy's log and the response)
                    return
                revoked_env = lesson.revoked and not pool_key.api_key_file
                until = now + self.cfg.pools.max_cooldown_s if revoked_env else lesson.until
                new = KeyState(until=min(until, REVOKED_UNTIL), revoked=lesson.revoked and not revoked_env,
                               fingerprint=fingerprint(pool_key) if lesson.revoked else "",
                               strikes=state.strikes + 1, last_status=status, last_at=now, rate=rate or state.rate)
                log.warning("pool %s: key %s answered %d; out %s", provider, key, status,
                            "until its secret changes" if new.revoked else f"for {int(new.until - now)}s")
            self.states[(provider, key)] = new
        self._pending.put(lambda store: store.save(provider, key, new))

    def used(self, provider: str, key: str, tokens: int) -> None:
        """Tokens a pool key's answer used (where a worker read the answer), for today's count."""
        if (provider, key) in self.keys:
            day = time.strftime("%Y-%m-%d", time.gmtime(self.clock()))
            self._pending.put(lambda store: store.add_usage(day, provider, key, 0, tokens))

    def observe_attempt(self, entry: Mapping[str, object]) -> None:
        """One refused attempt from Envoy's upstream log (`envoy_config.pools.attempts_log`), or an
        entry of the gRPC access-log receiver carrying the same fields."""
        provider, key = entry.get("provider"), entry.get("key")
        try:
            status = int(str(entry.get("status")))
        except ValueError:
            return
        try:
            at: float | None = float(str(entry.get("at")))
        except ValueError:
            at = None
        if isinstance(provider, str) and isinstance(key, str) and (provider, key) in self.keys:
            headers = {h: str(v) for h in RATE_HEADERS if (v := entry.get(h)) not in (None, "", "-")}
            if status >= 400 or self._lock_file is not None:  # successes: the stats leader's to keep
                self.observe(provider, key, status, headers, at)
            if headers and self._lock_file is not None:
                self._rates[(provider, key)] = headers

    def observe_upstream(self, cluster: str, status: int, headers: Mapping[str, str], at: float | None = None) -> None:
        """One upstream attempt as an access-log receiver reports it, by the cluster that reached the
        provider: a key's own cluster (`provider_X#key`) or its internal listener's (`provider_X~key`)."""
        for sep in ("#", "~"):
            head, found, key = cluster.partition(sep)
            if found and head.startswith("provider_"):
                self.observe(head.removeprefix("provider_"), key, status, headers, at)
                return

    # -- the thread ------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.pools or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="lunaroute-pools", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the pools' upkeep must never stop; the next tick retries
                log.exception("pool upkeep failed")
            if self._stop.wait(REFRESH_S):
                return

    def tick(self) -> None:
        """One round of upkeep (the thread's; tests call it directly)."""
        self._read_attempts()
        self._count_requests()
        rates, self._rates = self._rates, {}  # the providers' latest figures, once per tick
        for (provider, key), rate in rates.items():
            self._pending.put(lambda store, p=provider, k=key, r=rate: store.set_rate(p, k, r))
        try:
            while True:
                self._pending.get_nowait()(self.store)
        except queue.Empty:
            pass
        except Exception as exc:  # noqa: BLE001 - redis/sqlite errors of any kind: fail open
            self._store_failed(exc)
            return
        try:
            loaded = self.store.load(list(self.keys))
        except Exception as exc:  # noqa: BLE001
            self._store_failed(exc)
            return
        if not self._store_ok:
            log.warning("pool store answers again: cooldowns are shared again")
            self._store_ok = True
        with self._lock:
            self.states = loaded
        now = self.clock()
        for (provider, key), pool_key in self.keys.items():
            metrics.POOL_KEY_OUT.labels(provider, key).set(0 if self.usable(provider, pool_key, now) else 1)
        self._write_file()

    def _count_requests(self) -> None:
        """Every `STATS_EVERY_S`, one worker (the holder of a lock in the state dir) reads Envoy's
        count of the requests sent with each key (its cluster's, refused attempts included): /metrics,
        and today's requests per key (the fast path's too, which no worker sees)."""
        now = self.clock()
        socket_path = self.cfg.admin.socket
        if now < self._stats_due or not socket_path or not self._stats_leader():
            return
        found = stats(_KEY_STATS, socket_path)
        if found is None:
            return  # Envoy is not up yet: ask again next tick
        self._stats_due = now + STATS_EVERY_S
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        for (provider, key) in self.keys:
            total = found.get(f"cluster.{direct_cluster(provider, key)}.upstream_rq_total", 0)
            metrics.POOL_KEY_REQUESTS.labels(provider, key).set(total)
            delta = total - self._seen.get((provider, key), 0) if total >= self._seen.get((provider, key), 0) \
                else total  # Envoy restarted: its counters did too
            self._seen[(provider, key)] = total
            if delta:
                self._pending.put(lambda store, p=provider, k=key, d=delta: store.add_usage(day, p, k, d, 0))

    def _stats_leader(self) -> bool:
        if self._lock_file is None and self.cfg.pools.state_dir is not None:
            f = open(Path(self.cfg.pools.state_dir) / "lunaroute-pool-stats.lock", "a+")  # noqa: SIM115 - held
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                return False
            self._lock_file = f
        return self._lock_file is not None

    def _store_failed(self, exc: Exception) -> None:
        """Forget every cooldown until the store answers (fail open: the plain hash pick)."""
        if self._store_ok:
            log.warning("pool store unavailable (%s): every key counts as usable until it answers",
                        type(exc).__name__)
            self._store_ok = False
        with self._lock:
            self.states = {}
        self._write_file()

    def unusable(self) -> dict[str, dict[str, float]]:
        now = self.clock()
        out: dict[str, dict[str, float]] = {}
        for (provider, key), pool_key in self.keys.items():
            if not self.usable(provider, pool_key, now):
                state = self.states[(provider, key)]
                out.setdefault(provider, {})[key] = REVOKED_UNTIL if state.revoked else float(int(state.until) + 1)
        return out

    def _write_file(self) -> None:
        """Render the pool file only when the unusable keys changed (rendering costs milliseconds)."""
        if self.file is None:
            return
        unusable = self.unusable()
        if unusable != self._written:
            write_pools(self.cfg, self.file, unusable)
            self._written = unusable

    def _read_attempts(self) -> None:
        """New lines of Envoy's log of refused attempts (from where this worker started reading)."""
        if self.attempts is None:
            return
        try:
            with self.attempts.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                if self._offset is None or size < self._offset:
                    self._offset = size if self._offset is None else 0  # start at the end; a new file: its start
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            self._offset = self._offset or 0
            return
        complete = data.rfind(b"\n") + 1
        self._offset += complete
        if self._offset > ATTEMPTS_LOG_MAX_BYTES and self._stats_leader():
            os.truncate(self.attempts, 0)  # Envoy appends (O_APPEND): it goes on at the new end
            self._offset = 0
        lines = data[:complete].splitlines()
        # Refusals teach every worker; of the successes (most lines) only the stats leader reads a few,
        # the latest, for the providers' rate-limit figures: the workers' CPU stays off the fast path.
        refused = [line for line in lines if not _SUCCESS.search(line)]
        succeeded = [line for line in lines if _SUCCESS.search(line)][-RATES_PER_TICK:] if self._lock_file else []
        for line in refused + succeeded:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                self.observe_attempt(entry)
