"""The console's questions to the session store, one function each, shared by the pages and the JSON
API so that both always say the same thing.

Every query reads an index or an aggregate (extproc/observe/rollups.py), never the whole `records`
table: the sessions list pages through `session_index` by keyset (the cursor is the last row's
`last_ts` and id, so page 500 costs what page 1 costs), charts read `agg_hour` / `agg_day`, and only
the last hour is counted from `records` itself through its `ts` index.
"""

from __future__ import annotations

import base64
import binascii
import math
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ..observe import sessions as store

Window = Literal["hour", "day", "30d"]
GroupBy = Literal["key", "provider", "model", "day"]
WINDOWS: dict[str, tuple[int, int]] = {"hour": (3600, 60), "day": (86400, 3600), "30d": (30 * 86400, 86400)}
GROUPS = ("key", "provider", "model", "day")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_LIMIT = 200
_SUMS = ("requests", "errors", "input", "output", "cache_read", "cache_write", "reasoning", "cost_usd",
         "duration_ms", "ttft_ms", "ttft_count")


class BadQuery(ValueError):
    """A query parameter the console cannot use; the message names it and says what it takes."""


def parse_since(value: str | None, now: float, default: float = 0.0) -> float:
    """`since=`: a duration back from now (`90m`, `24h`, `7d`, `2w`), epoch seconds, or empty."""
    if not value:
        return default
    try:
        if value[-1] in _UNITS:
            return now - float(value[:-1]) * _UNITS[value[-1]]
        seconds = float(value)
    except (ValueError, IndexError):
        raise BadQuery(f"since={value!r}: give a duration (90m, 24h, 7d, 2w) or epoch seconds") from None
    if not math.isfinite(seconds):
        raise BadQuery(f"since={value!r}: give a duration (90m, 24h, 7d, 2w) or epoch seconds")
    return seconds


def parse_limit(value: str | None, default: int = 50) -> int:
    if not value:
        return default
    try:
        limit = int(value)
    except ValueError:
        raise BadQuery(f"limit={value!r}: give a whole number from 1 to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit={value!r}: give a whole number from 1 to {MAX_LIMIT}")
    return limit


@dataclass(frozen=True)
class SessionFilter:
    """What the sessions list is narrowed to. `key` is forced to the holder's own key when a gateway
    key holder is logged in (see auth)."""

    provider: str | None = None
    model: str | None = None
    key: str | None = None
    since: float = 0.0
    status: Literal["ok", "error"] | None = None
    limit: int = 50
    cursor: str | None = None


def _encode_cursor(last_ts: float, session: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([last_ts, session])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        ts, session = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(ts, int | float) and isinstance(session, str):
            return float(ts), session
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        pass
    raise BadQuery("cursor: not a cursor this console gave out; start again without it")


_SESSION_COLUMNS = ("session", "first_ts", "last_ts", "requests", "errors", "input", "output", "cache_read",
                    "cost_usd", "key", "provider", "model", "client")


def list_sessions(db: sqlite3.Connection, f: SessionFilter) -> tuple[list[dict[str, Any]], str | None]:
    """A page of sessions, most recent first, and the cursor of the next page (None: the last)."""
    where, args = ["last_ts >= ?"], [f.since]
    if f.cursor:
        ts, session = _decode_cursor(f.cursor)
        where.append("(last_ts, session) < (?, ?)")  # a row value: one index range, no OR, no sort
        args += [ts, session]
    if f.status == "ok":
        where.append("errors = 0")
    elif f.status == "error":
        where.append("errors > 0")
    dims = [(col, value) for col, value in (("provider", f.provider), ("model", f.model), ("key", f.key))
            if value is not None]
    if dims:
        where.append("EXISTS (SELECT 1 FROM session_dims d WHERE d.session = s.session AND "
                     + " AND ".join(f"d.{col} = ?" for col, _ in dims) + ")")
        args += [value for _, value in dims]
    rows = db.execute(f"SELECT {', '.join(_SESSION_COLUMNS)} FROM session_index s INDEXED BY session_index_last "
                      f"WHERE {' AND '.join(where)} ORDER BY last_ts DESC, session DESC LIMIT ?",
                      [*args, f.limit + 1]).fetchall()
    items = [_session_row(row) for row in rows[:f.limit]]
    more = len(rows) > f.limit
    return items, (_encode_cursor(items[-1]["last_ts"], items[-1]["session"]) if more and items else None)


def _session_row(row: tuple) -> dict[str, Any]:
    item: dict[str, Any] = dict(zip(_SESSION_COLUMNS, row, strict=True))
    item["cost_usd"] = round(item["cost_usd"], 8)
    item["cache_read_share"] = _share(item["cache_read"], item["input"])
    return item


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


TURNS_PER_PAGE = 50


def session_detail(db: sqlite3.Connection, session: str, key: str | None = None, offset: int = 0,
                   limit: int = TURNS_PER_PAGE) -> dict[str, Any] | None:
    """One session's summary and `limit` of its turns from the `offset`-th, with their bodies as
    recorded (already redacted); None when there is no such session (or none of it is `key`'s).
    `previous_request` is the request of the turn before the page, so the first turn on a later page
    can show only what it added."""
    row = db.execute(f"SELECT {', '.join(_SESSION_COLUMNS)} FROM session_index WHERE session = ?",
                     (session,)).fetchone()
    if row is None:
        return None
    before = 1 if offset > 0 else 0
    turns = list(store.turns(db, session, offset - before, limit + before + 1, key))
    previous = turns.pop(0) if before and turns else None
    if not turns and (key is not None or offset == 0):
        return None
    more = len(turns) > limit
    turns = turns[:limit]
    for t in turns:
        t.pop("client_ip", None)
        t["cache_read_share"] = _share(t["cache_read"] or 0, t["input"] or 0)
    return {**_session_row(row), "turns": turns, "offset": offset, "more": more,
            "previous_request": previous.get("request") if previous else None}


def parse_offset(value: str | None) -> int:
    try:
        offset = int(value or 0)
    except ValueError:
        raise BadQuery(f"offset={value!r}: give the number of turns to skip (0 or more)") from None
    if offset < 0:
        raise BadQuery(f"offset={value!r}: give the number of turns to skip (0 or more)")
    return offset


def facets(db: sqlite3.Connection, key: str | None = None) -> dict[str, list[str]]:
    """The providers, models and keys seen in the last 30 days (the filter form's choices), from the
    daily aggregate."""
    since = int((time.time() - 30 * 86400) // 86400) * 86400
    out: dict[str, list[str]] = {}
    for col in ("provider", "model", "key"):
        sql = f"SELECT DISTINCT {col} FROM agg_day WHERE bucket >= ? AND {col} != ''"
        args: list[Any] = [since]
        if key is not None:
            sql += " AND key = ?"
            args.append(key)
        out[col] = sorted(r[0] for r in db.execute(sql + " LIMIT 500", args))
    return out


# The last hour is counted from the records (minutes), with the aggregate tables' column names.
_MINUTES = ("(SELECT CAST(ts / 60 AS INTEGER) * 60 AS bucket, COALESCE(provider, '') AS provider, "
            "COALESCE(sent_model, model, '') AS model, COALESCE(key, '') AS key, 1 AS requests, "
            "(status >= 400 OR outcome != 'ok') AS errors, input, output, cache_read, cache_write, reasoning, "
            "cost_usd, duration_ms, COALESCE(ttft_ms, 0) AS ttft_ms, (ttft_ms IS NOT NULL) AS ttft_count "
            "FROM records WHERE ts >= ?)")


def _source(window: str, now: float) -> tuple[str, list[Any], int, int]:
    """(the table or subquery a window reads, its arguments, bucket size, first bucket)."""
    if window not in WINDOWS:
        raise BadQuery(f"window={window!r}: give hour, day or 30d")
    span, size = WINDOWS[window]
    first = int((now - span) // size + 1) * size
    if window == "hour":
        return _MINUTES, [first], size, first
    return ("agg_hour" if window == "day" else "agg_day"), [], size, first


def _group(db: sqlite3.Connection, source: str, args: list[Any], first: int, key: str | None,
           by: tuple[str, ...]) -> list[dict[str, Any]]:
    """The sums of `source` from bucket `first` on, grouped by the columns `by` — in SQLite, so a
    30-day window of thousands of aggregate rows costs milliseconds."""
    cols = ", ".join(by)
    where = "bucket >= ?" + (" AND key = ?" if key is not None else "")
    sql = (f"SELECT {cols + ', ' if by else ''}{', '.join(f'SUM({c})' for c in _SUMS)} FROM {source} "
           f"WHERE {where}" + (f" GROUP BY {cols}" if by else ""))
    rows = db.execute(sql, [*args, first, *([key] if key is not None else [])]).fetchall()
    return [dict(zip((*by, *_SUMS), r, strict=True)) for r in rows if r[len(by)]]


def _totals(row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    sums = {s: float(row.get(s) or 0) for s in _SUMS}
    out: dict[str, Any] = {s: int(sums[s]) for s in ("requests", "errors", "input", "output", "cache_read",
                                                     "cache_write", "reasoning")}
    out["cost_usd"] = round(sums["cost_usd"], 6)
    out["avg_duration_ms"] = round(sums["duration_ms"] / sums["requests"], 1) if sums["requests"] else None
    out["avg_ttft_ms"] = round(sums["ttft_ms"] / sums["ttft_count"], 1) if sums["ttft_count"] else None
    out["cache_read_share"] = _share(sums["cache_read"], sums["input"])
    return out


def _table(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    out = [{by: r[by], **_totals(r)} for r in rows]
    return sorted(out, key=lambda item: (-item["cost_usd"], -item["requests"], str(item[by])))


def _series(rows: list[dict], first: int, size: int, count: int, by: str, metric: str) -> dict[str, Any]:
    """`metric` per bucket and per `by` value: what a stacked bar chart draws."""
    buckets = [first + i * size for i in range(count)]
    values: dict[str, list[float]] = defaultdict(lambda: [0.0] * count)
    for r in rows:
        i = (int(r["bucket"]) - first) // size
        if 0 <= i < count:
            value = (r["input"] or 0) + (r["output"] or 0) if metric == "tokens" else r[metric] or 0
            values[r[by] or "—"][i] += value
    return {"buckets": buckets, "size": size, "series": dict(sorted(values.items()))}


def overview(db: sqlite3.Connection, window: str, now: float | None = None, key: str | None = None) -> dict[str, Any]:
    """Totals, the series the charts draw (requests, tokens, cost, errors per bucket and provider;
    cost per bucket and key) and the tables by provider and by key over the last hour, day or 30 days."""
    now = time.time() if now is None else now
    source, args, size, first = _source(window, now)
    per_bucket = _group(db, source, args, first, key, ("bucket", "provider"))
    total = _group(db, source, args, first, key, ())
    count = WINDOWS[window][0] // size
    return {
        "window": window, "since": first, "totals": _totals(total[0] if total else None),
        "charts": {**{metric: _series(per_bucket, first, size, count, "provider", metric)
                      for metric in ("requests", "tokens", "cost_usd", "errors")},
                   "cost_usd_by_key": _series(_group(db, source, args, first, key, ("bucket", "key")), first, size,
                                              count, "key", "cost_usd")},
        "by_provider": _table(_group(db, source, args, first, key, ("provider",)), "provider"),
        "by_key": _table(_group(db, source, args, first, key, ("key",)), "key"),
    }


def spend(db: sqlite3.Connection, group_by: str, since: float, now: float | None = None,
          key: str | None = None) -> dict[str, Any]:
    """Cost and tokens since `since` (whole UTC days, from `agg_day`) grouped by key, provider, model
    or day, with the daily series per group for the chart (per provider when grouped by day)."""
    if group_by not in GROUPS:
        raise BadQuery(f"group_by={group_by!r}: give one of {', '.join(GROUPS)}")
    now = time.time() if now is None else now
    first = int(max(since, now - 400 * 86400) // 86400) * 86400
    column = "bucket" if group_by == "day" else group_by
    rows = _group(db, "agg_day", [], first, key, (column,))
    if group_by == "day":
        for r in rows:
            r["day"] = time.strftime("%Y-%m-%d", time.gmtime(r.pop("bucket")))
    table = _table(rows, group_by)
    if group_by == "day":
        table.sort(key=lambda item: item["day"])
    days = int((now - first) // 86400) + 1
    chart_by = "provider" if group_by == "day" else group_by
    chart = _series(_group(db, "agg_day", [], first, key, ("bucket", chart_by)), first, 86400, days, chart_by,
                    "cost_usd")
    total = _group(db, "agg_day", [], first, key, ())
    return {"group_by": group_by, "since": first, "rows": table, "chart": chart,
            "totals": _totals(total[0] if total else None)}


SPEND_CSV_COLUMNS = ("requests", "errors", "input", "output", "cache_read", "cache_write", "reasoning", "cost_usd")


def spend_csv(result: dict[str, Any]) -> str:
    """The spend table as CSV (the same rows as /api/spend). Cells that a spreadsheet would run as a
    formula (`=`, `+`, `-`, `@` first) are quoted with a leading apostrophe."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    group = result["group_by"]
    writer.writerow([group, *SPEND_CSV_COLUMNS])
    for row in result["rows"]:
        name = str(row[group])
        if name[:1] in ("=", "+", "-", "@", "\t", "\r"):
            name = "'" + name
        writer.writerow([name, *(row[c] for c in SPEND_CSV_COLUMNS)])
    return out.getvalue()


def recent_decisions(db: sqlite3.Connection, limit: int = 50, key: str | None = None) -> list[dict[str, Any]]:
    """The last routing decisions: which model went where and why (newest first, through the ts index)."""
    cols = ("ts", "session", "key", "client", "path", "model", "sent_model", "provider", "reason", "status",
            "outcome")
    key_sql, args = ("WHERE key = ?", [key]) if key is not None else ("", [])
    rows = db.execute(f"SELECT {', '.join(cols)} FROM records INDEXED BY records_ts {key_sql} "
                      "ORDER BY ts DESC LIMIT ?", [*args, limit]).fetchall()
    return [dict(zip(cols, r, strict=True)) for r in rows]


def key_usage(db: sqlite3.Connection, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Per gateway key name: requests, errors and cost over the last 24 hours (from `agg_hour`)."""
    now = time.time() if now is None else now
    source, args, _size, first = _source("day", now)
    return {item["key"]: item for item in _table(_group(db, source, args, first, None, ("key",)), "key")}
