"""The processes `lunaroute up` starts, found through /proc (tests and benchmarks look inside them)."""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> dict[int, str]:
    """Live child processes of `pid`, with their command lines (arguments joined by spaces)."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return out


def envoy_pid(supervisor: int) -> int:
    return next(pid for pid, cmd in children(supervisor).items() if "envoy" in cmd and "extproc" not in cmd)


def worker_pids(supervisor: int) -> dict[int, str]:
    return {pid: cmd for pid, cmd in children(supervisor).items() if " worker " in cmd}
