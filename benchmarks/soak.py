"""Soak: hold many concurrent SSE streams through the gateway for a while; report errors and memory.

Starts, on loopback, the two mock providers (each in its own process, streaming slowly so that every
stream stays open for about `--stream-s`) and the gateway (`lunaroute up`), then keeps `--streams`
Anthropic-dialect streams open for `--duration` seconds: half passthrough (to the Anthropic-type
mock), half translated (a `[LUNAROUTE:gpt]` marker sends them to the OpenAI-type mock). A stream
that ends is replaced at once. A stream counts as an error unless it is a 200 that ends with
`message_stop`. RSS of every process is sampled each second: start (after the streams opened), peak
and end. Not a test; not run by CI. Exit status 1 when any stream failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_gateway import start  # noqa: E402
from tests.mock_providers import free_port  # noqa: E402

HEADERS = {"content-type": "application/json", "x-api-key": "soak", "anthropic-version": "2023-06-01"}
CHUNKS_PER_STREAM = 10  # about what the mocks send for their one-sentence answers


@dataclass
class Tally:
    completed: Counter = field(default_factory=Counter)  # by kind
    errors: Counter = field(default_factory=Counter)  # by kind and reason
    open_now: int = 0


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes(gateway: subprocess.Popen, mocks: dict[str, subprocess.Popen]) -> dict[str, int]:
    """Name -> pid of every process of the run: the supervisor, its children (Envoy, workers), mocks."""
    out = {"supervisor": gateway.pid}
    children = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(gateway.pid)], capture_output=True,
                              text=True, check=False).stdout
    for line in children.splitlines():
        pid, args = line.strip().split(None, 1)
        if " worker " in args:
            out[f"worker :{args.split('--port ')[1].split()[0]}"] = int(pid)
        elif "envoy" in args:
            out["envoy"] = int(pid)
    out.update({f"mock {kind}": p.pid for kind, p in mocks.items()})
    return out


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes, kind: str, tally: Tally) -> None:
    tally.open_now += 1
    try:
        async with session.post(url + "/v1/messages", data=body, headers=HEADERS) as resp:
            data = await resp.read()
        if resp.status != 200:
            tally.errors[f"{kind}: HTTP {resp.status}"] += 1
        elif b"event: message_stop" not in data:
            tally.errors[f"{kind}: ended without message_stop"] += 1
        else:
            tally.completed[kind] += 1
    except (TimeoutError, aiohttp.ClientError) as exc:
        tally.errors[f"{kind}: {type(exc).__name__}"] += 1
    finally:
        tally.open_now -= 1


async def soak(url: str, streams: int, duration_s: float, pids: dict[str, int], tally: Tally) -> dict[str, list[int]]:
    body = {"model": "claude-x", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    marked = {**body, "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]}
    bodies = {"passthrough": json.dumps(body).encode(), "translated": json.dumps(marked).encode()}
    deadline = time.monotonic() + duration_s
    samples: dict[str, list[int]] = {name: [] for name in pids}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        async def client(i: int) -> None:
            kind = "passthrough" if i % 2 == 0 else "translated"
            while time.monotonic() < deadline:
                await one_stream(session, url, bodies[kind], kind, tally)

        async def sampler() -> None:
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                for name, pid in pids.items():
                    samples[name].append(rss_kb(pid))
                print(f"  t={duration_s - (deadline - time.monotonic()):5.0f}s open={tally.open_now:4d} "
                      f"done={sum(tally.completed.values()):6d} errors={sum(tally.errors.values())}", flush=True)

        await asyncio.gather(sampler(), *(client(i) for i in range(streams)))
    return samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=300, help="concurrent SSE streams (default 300)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds to hold them (default 60)")
    ap.add_argument("--stream-s", type=float, default=10.0, help="how long one stream lasts (default 10)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lunaroute-soak-"))
    pause = str(args.stream_s / CHUNKS_PER_STREAM)
    mocks: dict[str, subprocess.Popen] = {}
    gateway: subprocess.Popen | None = None
    try:
        ports = {"anthropic": free_port(), "openai": free_port()}
        for kind, port in ports.items():
            mocks[kind] = start([sys.executable, "-m", "tests.mock_providers", kind, str(port), pause],
                                tmp / f"{kind}.log", ready="ready")
        raw = {
            "providers": {
                "anthropic": {"type": "anthropic", "base_url": f"http://127.0.0.1:{ports['anthropic']}"},
                "gpt": {"type": "openai", "base_url": f"http://127.0.0.1:{ports['openai']}/v1", "model": "gpt-x"},
            },
            "listen": {"port": free_port()},
            "extproc": {"port": free_port(args.workers), "workers": args.workers},
            "log_level": "warning",
        }
        (tmp / "gw.yaml").write_text(yaml.safe_dump(raw))
        gateway = start([sys.executable, "-m", "extproc.cli", "up", "--config", str(tmp / "gw.yaml")],
                        tmp / "gateway.log", ready="ANTHROPIC_BASE_URL")
        pids = processes(gateway, mocks)
        print(f"{args.streams} streams of ~{args.stream_s:g}s for {args.duration:g}s; logs in {tmp}", flush=True)
        tally = Tally()
        samples = asyncio.run(soak(f"http://127.0.0.1:{raw['listen']['port']}", args.streams, args.duration,
                                   pids, tally))
    finally:
        for proc in [gateway, *mocks.values()]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [gateway, *mocks.values()]:
            if proc is not None:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()

    print(f"\ncompleted streams: {dict(tally.completed)}")
    print(f"errors: {dict(tally.errors) or 0}")
    print(f"\n{'process':18} {'RSS start':>10} {'peak':>10} {'end':>10}   (MiB)")
    for name, values in samples.items():
        if values:
            start_mb, peak_mb, end_mb = (v / 1024 for v in (values[0], max(values), values[-1]))
            print(f"{name:18} {start_mb:10.1f} {peak_mb:10.1f} {end_mb:10.1f}")
    return 1 if tally.errors else 0


if __name__ == "__main__":
    sys.exit(main())
