"""Session records: one JSON line per routed request, in one file per client session.

What is recorded is the gateway's decision and what came of it — never headers, never keys, never
bodies: when, which session, path, client dialect, the provider (`lunaroute:<name>`), why, the model
and any `model_override`, the fallback chain, and for responses the gateway saw, status and usage.
Claude Code names its session in `x-claude-code-session-id`; other clients land in `no-session`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import orjson

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class SessionRecorder:
    def __init__(self, directory: str) -> None:
        self.root = Path(os.path.expanduser(directory))

    def path_for(self, session: str | None) -> Path:
        name = _UNSAFE.sub("_", session or "")[:128].strip(".") or "no-session"
        return self.root / time.strftime("%Y-%m-%d") / f"{name}.jsonl"

    def record(self, session: str | None, entry: dict[str, Any]) -> None:
        """Append one line; a full disk or a bad directory loses the record, never the request."""
        path = self.path_for(session)
        line = orjson.dumps({"ts": round(time.time(), 3), **entry}) + b"\n"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as f:  # one write per line: lines of concurrent workers do not interleave
                f.write(line)
        except OSError:
            pass
