"""The session store: one SQLite file under `recording.dir`, an index row per request and its bodies
zstd-compressed beside it, written by one thread per worker and read by `lunaroute sessions`.

Why a thread and a bounded queue: SQLite calls block, and a worker's event loop carries every
stream it holds; a record must never make a token wait. When the queue is full (the disk is slower
than the traffic) the record is dropped and counted (`lunaroute_records_dropped_total`), never
waited for. SIGTERM drains the queue; a kill -9 loses what was queued. Workers of one gateway share
the file (WAL mode, a busy timeout).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, overload

import orjson
import zstandard

from . import metrics, rollups
from .sse_reassembly import reassemble

log = logging.getLogger("lunaroute")

DB_NAME = "sessions.sqlite"
_COLUMNS = ("ts", "session", "request_id", "key", "client", "path", "provider", "model", "sent_model",
            "reason", "status", "outcome", "stream", "input", "output", "cache_read", "cache_write",
            "reasoning", "cost_usd", "duration_ms", "ttft_ms", "overhead_ms", "client_ip", "truncated",
            "pool_key")  # the name of the credential-pool key that answered (extproc.pools), never the key
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, {", ".join(_COLUMNS)}, body_bytes INTEGER, bodies BLOB);
CREATE INDEX IF NOT EXISTS records_session ON records (session, ts);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
"""
_RETENTION_EVERY_S = 60.0


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def _private(path: Path) -> None:
    """The store file and its WAL/SHM readable by this user only (records hold prompts), whatever
    the umask and whether or not the directory already existed. SQLite gives the WAL and SHM files
    the database file's mode; those left by an older, looser store are tightened too."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)


def open_db(directory: str, create: bool = True) -> sqlite3.Connection:
    """The store under `directory` (0700, its files 0600: records hold prompts), with its
    aggregates (`rollups`) created and back-filled if the store predates them."""
    root = Path(os.path.expanduser(directory))
    if create:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private(root / DB_NAME)
    elif not (root / DB_NAME).exists():
        raise FileNotFoundError(f"no session store in {root} (is recording.enabled on, with this dir?)")
    db = _connect(root / DB_NAME)
    db.executescript(_SCHEMA)
    rollups.migrate(db)
    if "pool_key" not in {row[1] for row in db.execute("PRAGMA table_info(records)")}:  # a store from before pools
        db.execute("ALTER TABLE records ADD COLUMN pool_key")
    return db


def encode_bodies(record: dict[str, Any], redact: Callable[[bytes], bytes] | None) -> bytes:
    """The bodies of one record as one zstd frame: client request, provider request, the response
    reassembled (a stream becomes its final message) and, for streams, the raw events.

    A value split across deltas ("4111 1111" in one event, "1111 1111" in the next) is whole only in
    the reassembled message, so that is what redaction reads. When it finds something there, the raw
    events would still hold it in pieces no pattern sees: they are not kept (`events_withheld`)."""
    @overload
    def clean(data: bytes) -> bytes: ...
    @overload
    def clean(data: bytes | None) -> bytes | None: ...
    def clean(data: bytes | None) -> bytes | None:  # bytes in, bytes out: only an absent body stays None
        return redact(data) if data and redact is not None else data

    raw = record.get("response") or b""
    final = reassemble(record.get("client", ""), raw) if record.get("stream") else None
    doc: dict[str, Any] = {
        "request": _as_json(clean(record.get("request"))),
        "provider_request": _as_json(clean(record.get("provider_request"))),
        "events": None,
    }
    if final is None:
        doc["response"] = _as_json(clean(raw))
    else:
        whole = orjson.dumps(final)
        masked = clean(whole)
        doc["response"] = _as_json(masked)
        if masked == whole:
            doc["events"] = clean(raw).decode("utf-8", "replace")
        else:
            doc["events_withheld"] = "pii"
    return zstandard.ZstdCompressor(level=3).compress(orjson.dumps(doc))


def decode_bodies(blob: bytes | None) -> dict[str, Any]:
    if not blob:
        return {}
    return orjson.loads(zstandard.ZstdDecompressor().decompress(blob))


def _as_json(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")


def insert(db: sqlite3.Connection, record: dict[str, Any], redact: Callable[[bytes], bytes] | None) -> None:
    bodies = encode_bodies(record, redact)
    usage = record.get("usage") or {}
    row = {**{c: record.get(c) for c in _COLUMNS}, **{k: usage.get(k, 0) for k in
           ("input", "output", "cache_read", "cache_write", "reasoning")}}
    row["stream"] = bool(record.get("stream"))
    row["truncated"] = bool(record.get("truncated"))
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(f"INSERT INTO records ({', '.join(_COLUMNS)}, body_bytes, bodies) "
                   f"VALUES ({', '.join('?' * (len(_COLUMNS) + 2))})",
                   [row[c] for c in _COLUMNS] + [len(bodies), bodies])
        rollups.add(db, row)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def enforce_retention(db: sqlite3.Connection, max_age_days: float, max_bytes: int, max_sessions: int = 10_000) -> int:
    """Delete records older than `max_age_days`, the sessions beyond the newest `max_sessions`, then
    the oldest records until the bodies fit `max_bytes`."""
    deleted = db.execute("DELETE FROM records WHERE ts < ?", (time.time() - max_age_days * 86400,)).rowcount
    deleted += db.execute(
        "DELETE FROM records WHERE session IN (SELECT session FROM session_index "
        "ORDER BY last_ts DESC LIMIT -1 OFFSET ?)", (max_sessions,)).rowcount
    total = db.execute("SELECT COALESCE(SUM(body_bytes), 0) FROM records").fetchone()[0]
    if total > max_bytes:
        cutoff = db.execute(
            "SELECT ts FROM (SELECT ts, SUM(body_bytes) OVER (ORDER BY ts DESC) AS kept FROM records) "
            "WHERE kept > ? ORDER BY ts DESC LIMIT 1", (max_bytes,)).fetchone()
        if cutoff is not None:
            deleted += db.execute("DELETE FROM records WHERE ts <= ?", (cutoff[0],)).rowcount
    if deleted:
        rollups.prune(db, time.time() - 2 * rollups.DAY_S)
    return deleted


class RecordWriter:
    """A bounded queue and the thread that drains it into the store."""

    _STOP = object()

    def __init__(self, directory: str, queue_size: int = 1000, max_age_days: float = 30,
                 max_bytes: int = 1 << 30, redact: Callable[[bytes], bytes] | None = None,
                 max_sessions: int = 10_000) -> None:
        self.directory = directory
        self.max_age_days = max_age_days
        self.max_bytes = max_bytes
        self.max_sessions = max_sessions
        self.redact = redact
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="lunaroute-records", daemon=True)
        self._thread.start()

    def submit(self, record: dict[str, Any]) -> bool:
        """Queue a record; False (and counted) when the queue is full. Never blocks."""
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            metrics.RECORDS_DROPPED.labels("queue_full").inc()
            return False
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop (SIGTERM's flush)."""
        with contextlib.suppress(queue.Full):
            self.queue.put(self._STOP, timeout=timeout_s)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            db = open_db(self.directory)
        except (OSError, sqlite3.Error):
            log.exception("cannot open the session store in %s; records are dropped", self.directory)
            db = None
        last_retention = 0.0
        while True:
            item = self.queue.get()
            if item is self._STOP:
                return
            if db is None:
                metrics.RECORDS_DROPPED.labels("store_error").inc()
                continue
            try:
                insert(db, item, self.redact)
                if time.monotonic() - last_retention > _RETENTION_EVERY_S:
                    last_retention = time.monotonic()
                    enforce_retention(db, self.max_age_days, self.max_bytes, self.max_sessions)
            except Exception:  # noqa: BLE001 - one bad record must not stop the writer
                log.exception("could not write a session record")
                metrics.RECORDS_DROPPED.labels("store_error").inc()


# -- reading (lunaroute sessions) ------------------------------------------------------------------

def sessions(db: sqlite3.Connection, limit: int = 50, since: float = 0.0) -> list[dict[str, Any]]:
    """Recent sessions, newest first, with their totals."""
    rows = db.execute(
        "SELECT session, MIN(ts), MAX(ts + duration_ms / 1000.0), COUNT(*), GROUP_CONCAT(DISTINCT provider), "
        "SUM(input), SUM(output), SUM(reasoning), SUM(cache_read), SUM(cache_write), SUM(cost_usd), "
        "SUM(overhead_ms) FROM records WHERE ts >= ? GROUP BY session ORDER BY MAX(ts) DESC LIMIT ?",
        (since, limit)).fetchall()
    keys = ("session", "start", "end", "requests", "providers", "input", "output", "reasoning", "cache_read",
            "cache_write", "cost_usd", "overhead_ms")
    out = []
    for row in rows:
        item: dict[str, Any] = dict(zip(keys, row, strict=True))
        item["providers"] = sorted((item["providers"] or "").split(","))
        item["duration_s"] = round(item.pop("end") - item["start"], 3)
        item["cost_usd"] = round(item["cost_usd"] or 0.0, 8)
        item["overhead_ms"] = round(item["overhead_ms"] or 0.0, 3)
        out.append(item)
    return out


def turns(db: sqlite3.Connection, session: str, offset: int = 0, limit: int = -1,
          key: str | None = None) -> Iterator[dict[str, Any]]:
    """The records of a session, oldest first, bodies decoded: all of them, or `limit` from the
    `offset`-th (the console pages through long sessions); only `key`'s when given."""
    where, args = "session = ?", [session]
    if key is not None:
        where, args = where + " AND key = ?", [*args, key]
    cur = db.execute(f"SELECT id, {', '.join(_COLUMNS)}, bodies FROM records WHERE {where} ORDER BY ts, id "
                     "LIMIT ? OFFSET ?", (*args, limit, offset))
    for row in cur:
        item: dict[str, Any] = dict(zip(("id", *_COLUMNS), row[:-1], strict=True))
        item["stream"], item["truncated"] = bool(item["stream"]), bool(item["truncated"])
        item.update(decode_bodies(row[-1]))
        yield item


def stats(db: sqlite3.Connection, since: float, by: str) -> list[dict[str, Any]]:
    """Totals per provider, model or key since `since`."""
    column = {"provider": "provider", "model": "COALESCE(sent_model, model)", "key": "key"}[by]
    rows = db.execute(
        f"SELECT {column}, COUNT(*), SUM(input), SUM(output), SUM(cache_read), SUM(cache_write), SUM(cost_usd), "
        "AVG(duration_ms), AVG(ttft_ms), AVG(overhead_ms), SUM(status >= 400 OR outcome != 'ok') "
        f"FROM records WHERE ts >= ? GROUP BY {column} ORDER BY SUM(cost_usd) DESC", (since,)).fetchall()
    keys = (by, "requests", "input", "output", "cache_read", "cache_write", "cost_usd", "avg_duration_ms",
            "avg_ttft_ms", "avg_overhead_ms", "errors")
    return [{k: (round(v, 3) if isinstance(v, float) and k != "cost_usd" else v)
             for k, v in zip(keys, row, strict=True)} for row in rows]
