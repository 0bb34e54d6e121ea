"""`lunaroute sessions list|show|stats|export`: the session store read back, as `rich` tables for a
terminal and as JSON (`--json`, `export`: JSONL) for scripts. It reads the store of the config it is
given (`recording.dir`), never a running gateway.

Everything in a record was written by a client (prompts, model names, session ids) or a provider, so
it reaches the terminal only through `_plain`: as `rich.text.Text` (never parsed as markup: `[/x]`
neither styles nor crashes) with control characters replaced (no escape sequence from a prompt sets
colours, hyperlinks or the terminal's title)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from . import sessions as store

_PERIODS = {"h": 3600, "d": 86400, "w": 7 * 86400}
# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI on some terminals)
_CONTROLS = {c: "\ufffd" for c in (*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0))}


def _plain(value: object, style: str = "") -> Text:
    """Client or provider text for the terminal: literal, without control characters."""
    return Text(str(value).translate(_CONTROLS), style=style)


def _since(period: str) -> float:
    """`24h`, `7d`, `2w` → the epoch second the period starts at; `all` → 0."""
    if period == "all":
        return 0.0
    try:
        return time.time() - float(period[:-1]) * _PERIODS[period[-1]]
    except (KeyError, ValueError):
        raise SystemExit(f"lunaroute: --since {period!r}: write a number and h, d or w (24h, 7d), or all") from None


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or 0, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def _json_out(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def cmd_list(args: argparse.Namespace, directory: str) -> int:
    with store.open_db(directory, create=False) as db:
        rows = store.sessions(db, args.limit, _since(args.since))
    if args.json:
        _json_out(rows)
        return 0
    table = Table(title=_plain(f"sessions in {directory}"))
    for col in ("session", "start (UTC)", "duration", "requests", "providers", "in", "out", "thinking",
                "cache r/w", "cost", "overhead"):
        table.add_column(col, justify="right" if col not in ("session", "providers") else "left")
    for r in rows:
        table.add_row(_plain(r["session"]), _when(r["start"]), f"{r['duration_s']:.1f}s", str(r["requests"]),
                      _plain(",".join(r["providers"])), str(r["input"]), str(r["output"]), str(r["reasoning"]),
                      f"{r['cache_read']}/{r['cache_write']}", _usd(r["cost_usd"]), f"{r['overhead_ms']:.1f} ms")
    Console().print(table)
    return 0


def _text_of(body: Any) -> str:
    """What a human reads first of a body: its last user text or the answer's text."""
    if not isinstance(body, dict):
        return str(body or "")
    if isinstance(body.get("messages"), list) and body["messages"]:
        return _content_text(body["messages"][-1].get("content"))
    if isinstance(body.get("input"), list | str):
        items = body["input"]
        return items if isinstance(items, str) else _content_text(items[-1].get("content") if items else "")
    if "content" in body:
        return _content_text(body["content"])
    if body.get("choices"):
        message = body["choices"][0].get("message") or {}
        return _content_text(message.get("content")) + "".join(
            f"\n→ {c['function']['name']}({c['function']['arguments']})" for c in message.get("tool_calls") or ())
    if isinstance(body.get("output"), list):
        return "\n".join(_content_text(item.get("content")) for item in body["output"] if isinstance(item, dict))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif block.get("type") == "tool_use":
            parts.append(f"→ {block.get('name')}({orjson.dumps(block.get('input')).decode()})")
        elif block.get("type") == "tool_result":
            parts.append(f"← {_content_text(block.get('content'))}")
        elif block.get("type") == "thinking":
            parts.append(f"(thinking) {block.get('thinking', '')}")
    return "\n".join(parts)


def cmd_show(args: argparse.Namespace, directory: str) -> int:
    with store.open_db(directory, create=False) as db:
        rows = list(store.turns(db, args.id))
    if not rows:
        print(f"lunaroute: no session {args.id!r} in {directory}", file=sys.stderr)
        return 1
    if args.json:
        _json_out(rows)
        return 0
    console = Console()
    for i, r in enumerate(rows, 1):
        head = _plain(f"#{i} {_when(r['ts'])}  {r['client']} {r['path']} → {r['provider']} ({r['reason']})  "
                      f"model {r['model']}" + (f" → {r['sent_model']}" if r["sent_model"] != r["model"] else "")
                      + f"  status {r['status']} {r['outcome']}")
        ttft = "—" if r["ttft_ms"] is None else f"{r['ttft_ms']:.0f} ms"
        facts = (f"tokens in {r['input']} out {r['output']} cache r/w {r['cache_read']}/{r['cache_write']}  "
                 f"cost {_usd(r['cost_usd'])}  {r['duration_ms'] or 0:.0f} ms, ttft {ttft}, "
                 f"overhead {r['overhead_ms'] or 0:.2f} ms")
        body = Text.assemble(_plain("user", "bold"), ": ", _plain(_text_of(r.get("request"))), "\n",
                             _plain("answer", "bold"), ": ", _plain(_text_of(r.get("response"))))
        console.print(Panel(body, title=head, subtitle=Text(facts), title_align="left", subtitle_align="left"),
                      highlight=False)
    return 0


def cmd_export(args: argparse.Namespace, directory: str) -> int:
    with store.open_db(directory, create=False) as db:
        for row in store.turns(db, args.id):
            sys.stdout.buffer.write(orjson.dumps(row) + b"\n")
    return 0


def cmd_stats(args: argparse.Namespace, directory: str) -> int:
    with store.open_db(directory, create=False) as db:
        rows = store.stats(db, _since(args.since), args.by)
    if args.json:
        _json_out(rows)
        return 0
    table = Table(title=f"by {args.by}, since {args.since}")
    for col in (args.by, "requests", "errors", "in", "out", "cache r/w", "cost", "avg duration", "avg ttft",
                "avg overhead"):
        table.add_column(col, justify="left" if col == args.by else "right")
    for r in rows:
        table.add_row(_plain(r[args.by] or "—"), str(r["requests"]), str(r["errors"]), str(r["input"]),
                      str(r["output"]), f"{r['cache_read']}/{r['cache_write']}", _usd(r["cost_usd"]),
                      f"{r['avg_duration_ms'] or 0:.0f} ms", f"{r['avg_ttft_ms'] or 0:.0f} ms",
                      f"{r['avg_overhead_ms'] or 0:.2f} ms")
    Console().print(table)
    return 0


def add_parser(sub: argparse._SubParsersAction, with_config: Any) -> argparse.ArgumentParser:
    """`lunaroute sessions …` under the main parser; each command sets `sessions_func(args, dir)`."""
    sessions = sub.add_parser("sessions", help="recorded sessions: list, show, stats, export")
    ssub = sessions.add_subparsers(dest="sessions_command", required=True)
    lst = with_config(ssub.add_parser("list", help="recent sessions with their totals"))
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--since", default="all", help="24h, 7d, 2w or all (default)")
    lst.set_defaults(sessions_func=cmd_list)
    show = with_config(ssub.add_parser("show", help="a session's turns, readable"))
    show.add_argument("id")
    show.set_defaults(sessions_func=cmd_show)
    stats = with_config(ssub.add_parser("stats", help="totals per provider, model or key over a period"))
    stats.add_argument("--by", choices=("provider", "model", "key"), default="provider")
    stats.add_argument("--since", default="7d", help="24h, 7d (default), 2w or all")
    stats.set_defaults(sessions_func=cmd_stats)
    export = with_config(ssub.add_parser("export", help="a session's records as JSONL, bodies included"))
    export.add_argument("id")
    export.set_defaults(sessions_func=cmd_export)
    for sp in (lst, show, stats):
        sp.add_argument("--json", action="store_true", help="JSON for scripts")
    return sessions
