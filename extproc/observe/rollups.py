"""Aggregates of the session store, kept by the record writer in the same transaction as each record,
so the console (extproc/console) answers from small tables instead of scanning a million records.

- `agg_hour` / `agg_day`: requests, errors, tokens, cost and time per UTC hour / day and
  (provider, model, key). A day of traffic is at most 24 × (providers × models × keys) rows.
- `session_index`: one row per session (first and last request, totals, the last key, provider and
  model, errors), indexed by its last request: the sessions list pages through it by keyset.
- `session_dims`: the (provider, model, key) combinations each session used, so a filter on any of
  them checks a session with one primary-key probe.

A store written before these tables existed is back-filled once, when it is opened (`migrate`).
Retention deletes records; `prune` then drops the sessions left without records and hourly rows
older than two days. Daily rows stay (spend history outlives the bodies; a few KB a day). A session
whose oldest records were deleted keeps its totals (they say what it cost) until it is gone entirely.
"""

from __future__ import annotations

import sqlite3
from typing import Any

VERSION = 1
HOUR_S = 3600
DAY_S = 86400
_SUMS = ("requests", "errors", "input", "output", "cache_read", "cache_write", "reasoning", "cost_usd",
         "duration_ms", "ttft_ms", "ttft_count")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS agg_hour (bucket INTEGER NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
  key TEXT NOT NULL, {", ".join(f"{c} REAL NOT NULL DEFAULT 0" for c in _SUMS)},
  PRIMARY KEY (bucket, provider, model, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_day (bucket INTEGER NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
  key TEXT NOT NULL, {", ".join(f"{c} REAL NOT NULL DEFAULT 0" for c in _SUMS)},
  PRIMARY KEY (bucket, provider, model, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_index (session TEXT PRIMARY KEY, first_ts REAL NOT NULL, last_ts REAL NOT NULL,
  requests INTEGER NOT NULL, errors INTEGER NOT NULL, input INTEGER NOT NULL, output INTEGER NOT NULL,
  cache_read INTEGER NOT NULL, cost_usd REAL NOT NULL, key TEXT NOT NULL, provider TEXT NOT NULL,
  model TEXT NOT NULL, client TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS session_index_last ON session_index (last_ts, session);
CREATE TABLE IF NOT EXISTS session_dims (session TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
  key TEXT NOT NULL, PRIMARY KEY (session, provider, model, key)) WITHOUT ROWID;
"""

# What one record adds; the same expressions back-fill from `records` (column names line up).
_ERROR = "(CASE WHEN status >= 400 OR outcome != 'ok' THEN 1 ELSE 0 END)"
_MODEL = "COALESCE(sent_model, model, '')"


def _agg_upsert(table: str) -> str:
    cols = ", ".join(_SUMS)
    return (f"INSERT INTO {table} (bucket, provider, model, key, {cols}) VALUES (?, ?, ?, ?, "
            f"{', '.join('?' * len(_SUMS))}) ON CONFLICT (bucket, provider, model, key) DO UPDATE SET "
            + ", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMS))


_HOUR_UPSERT = _agg_upsert("agg_hour")
_DAY_UPSERT = _agg_upsert("agg_day")
_SESSION_UPSERT = (
    "INSERT INTO session_index VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session) DO UPDATE SET "
    "first_ts = MIN(first_ts, excluded.first_ts), last_ts = MAX(last_ts, excluded.last_ts), "
    "requests = requests + 1, errors = errors + excluded.errors, input = input + excluded.input, "
    "output = output + excluded.output, cache_read = cache_read + excluded.cache_read, "
    "cost_usd = cost_usd + excluded.cost_usd, key = excluded.key, provider = excluded.provider, "
    "model = excluded.model, client = excluded.client")


def add(db: sqlite3.Connection, row: dict[str, Any]) -> None:
    """Count one record (a dict of `records` columns) in every aggregate; call inside its transaction."""
    ts = float(row["ts"] or 0)
    provider, key = row.get("provider") or "", row.get("key") or ""
    model = row.get("sent_model") or row.get("model") or ""
    error = int((row.get("status") or 0) >= 400 or row.get("outcome") != "ok")
    ttft = row.get("ttft_ms")
    sums = (1, error, row.get("input") or 0, row.get("output") or 0, row.get("cache_read") or 0,
            row.get("cache_write") or 0, row.get("reasoning") or 0, row.get("cost_usd") or 0.0,
            row.get("duration_ms") or 0.0, ttft or 0.0, 0 if ttft is None else 1)
    db.execute(_HOUR_UPSERT, (int(ts // HOUR_S) * HOUR_S, provider, model, key, *sums))
    db.execute(_DAY_UPSERT, (int(ts // DAY_S) * DAY_S, provider, model, key, *sums))
    session = row.get("session") or ""
    db.execute(_SESSION_UPSERT, (session, ts, ts, error, row.get("input") or 0, row.get("output") or 0,
                                 row.get("cache_read") or 0, row.get("cost_usd") or 0.0, key, provider, model,
                                 row.get("client") or ""))
    db.execute("INSERT OR IGNORE INTO session_dims VALUES (?, ?, ?, ?)", (session, provider, model, key))


def _backfill(db: sqlite3.Connection) -> None:
    sums = (f"COUNT(*), SUM({_ERROR}), SUM(input), SUM(output), SUM(cache_read), SUM(cache_write), "
            "SUM(reasoning), SUM(cost_usd), SUM(duration_ms), SUM(COALESCE(ttft_ms, 0)), COUNT(ttft_ms)")
    for table, size in (("agg_hour", HOUR_S), ("agg_day", DAY_S)):
        db.execute(f"INSERT INTO {table} SELECT CAST(ts / {size} AS INTEGER) * {size} AS b, COALESCE(provider, ''), "
                   f"{_MODEL} AS m, COALESCE(key, '') AS k, {sums} FROM records GROUP BY b, 2, m, k")
    # the last record's key, provider and model: SQLite's bare columns take the row of MAX(ts)
    db.execute(f"INSERT INTO session_index SELECT COALESCE(session, ''), MIN(ts), MAX(ts), COUNT(*), SUM({_ERROR}), "
               "SUM(input), SUM(output), SUM(cache_read), SUM(cost_usd), COALESCE(key, ''), "
               f"COALESCE(provider, ''), {_MODEL}, COALESCE(client, '') FROM records GROUP BY 1")
    db.execute(f"INSERT OR IGNORE INTO session_dims SELECT DISTINCT COALESCE(session, ''), COALESCE(provider, ''), "
               f"{_MODEL}, COALESCE(key, '') FROM records")


def migrate(db: sqlite3.Connection) -> None:
    """Create the aggregate tables and, for a store that predates them, fill them from its records.
    Workers opening the store together: the first takes the write lock, the others find it done."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] < VERSION:
            # statement by statement: executescript would commit the open transaction
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            _backfill(db)
            db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def prune(db: sqlite3.Connection, oldest_hour: float) -> None:
    """After retention deleted records: forget sessions without records and hourly rows before
    `oldest_hour` (epoch seconds)."""
    db.execute("DELETE FROM session_index WHERE NOT EXISTS "
               "(SELECT 1 FROM records WHERE records.session = session_index.session)")
    db.execute("DELETE FROM session_dims WHERE session NOT IN (SELECT session FROM session_index)")
    db.execute("DELETE FROM agg_hour WHERE bucket < ?", (int(oldest_hour),))
