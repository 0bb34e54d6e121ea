"""Gateway overhead against bare Envoy, measured in the same run (see README.md here)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extproc import config as config_mod  # noqa: E402
from extproc import envoy_config  # noqa: E402
from extproc.supervisor import find_envoy  # noqa: E402
from tests.mock_providers import free_port  # noqa: E402

SMALL = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def claude_code_body() -> dict:
    recorded = json.loads((ROOT / "tests/fixtures/claude_code/recorded_first_turn.json").read_text())
    return {**recorded["body"], "stream": False}


def start(cmd: list[str], log: Path, ready: str | None = None) -> subprocess.Popen:
    """Start a process logging to a file (a pipe nobody drains would stall it under load)."""
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 30
    while ready and ready.encode() not in log.read_bytes():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} did not become ready; see {log}")
        time.sleep(0.1)
    return proc


def bare_envoy_bootstrap(cfg: config_mod.Config) -> dict:
    """The gateway's own bootstrap with the ext_proc filter removed and every route sent straight on."""
    boot = envoy_config.render(cfg)
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != envoy_config.EXTPROC_FILTER]
    hcm["route_config"].pop("typed_per_filter_config", None)
    for route in hcm["route_config"]["virtual_hosts"][0]["routes"]:
        action = route.get("route")
        if action and "inline_cluster_specifier_plugin" in action:
            del action["inline_cluster_specifier_plugin"]
            action["cluster"] = envoy_config.cluster_name("anthropic")
        route.pop("typed_per_filter_config", None)
    clusters = [c for c in boot["static_resources"]["clusters"] if c["name"] != envoy_config.EXTPROC_CLUSTER]
    for cluster in clusters:
        options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        options["http_filters"] = [f for f in options.get("http_filters", []) if "ext_proc" not in f["name"]]
    boot["static_resources"]["clusters"] = clusters
    return boot


async def drive(url: str, body: bytes, path: str, n: int, concurrency: int, headers: dict) -> list[float]:
    latencies: list[float] = []
    queue = iter(range(n))
    async with aiohttp.ClientSession() as session:
        async def worker() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                async with session.post(url + path, data=body, headers=headers) as resp:
                    answer = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url}{path}: HTTP {resp.status}: {answer[:300]!r} {dict(resp.headers)}")
                latencies.append(time.perf_counter() - t0)
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=300)
        latencies.append(time.perf_counter() - started)  # last item: wall time
    return latencies


def summarize(lat: list[float]) -> tuple[float, float, float]:
    wall, samples = lat[-1], sorted(lat[:-1])
    p99 = samples[int(len(samples) * 0.99) - 1]
    return len(samples) / wall, statistics.median(samples) * 1000, p99 * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    procs: list[subprocess.Popen] = []
    tmp = Path(tempfile.mkdtemp(prefix="lunaroute-bench-"))
    try:
        ports = {"anthropic": free_port(), "openai": free_port()}
        for kind, port in ports.items():
            procs.append(start([sys.executable, "-m", "tests.mock_providers", kind, str(port)], tmp / f"{kind}.log",
                               ready="ready"))
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
        cfg = config_mod.load(tmp / "gw.yaml", env={})
        gateway_url = f"http://127.0.0.1:{cfg.listen.port}"
        procs.append(start([sys.executable, "-m", "extproc.cli", "up", "--config", str(tmp / "gw.yaml")],
                           tmp / "gateway.log", ready="ANTHROPIC_BASE_URL"))
        bare_port = free_port()
        bare_listen = cfg.listen.model_copy(update={"port": bare_port})
        bare = bare_envoy_bootstrap(cfg.model_copy(update={"listen": bare_listen}))
        (tmp / "bare.yaml").write_text(yaml.safe_dump(bare))
        procs.append(start([find_envoy(), "-c", str(tmp / "bare.yaml"), "--disable-hot-restart", "-l", "error"],
                           tmp / "bare.log"))
        bare_url = f"http://127.0.0.1:{bare_port}"
        time.sleep(1.0)

        headers = {"content-type": "application/json", "x-api-key": "bench", "anthropic-version": "2023-06-01"}
        cc = json.dumps(claude_code_body()).encode()
        small = json.dumps(SMALL).encode()
        marked = json.loads(json.dumps(SMALL))
        marked["messages"][0]["content"] = "[LUNAROUTE:gpt] hi"
        scenarios = [
            ("passthrough, small body", small, bare_url),
            ("passthrough, Claude Code body (115 KB)", cc, bare_url),
            ("translated to OpenAI (marker), small body", json.dumps(marked).encode(), bare_url),
        ]
        print(f"requests per scenario: {args.requests}, concurrency: {args.concurrency}, "
              f"workers: {args.workers}, cores: {os.cpu_count()}\n")
        print(f"{'scenario':45} {'bare rps':>9} {'gw rps':>8} {'ratio':>6} {'bare p50':>9} {'gw p50':>8} {'gw p99':>8}")
        for name, body, base in scenarios:
            b = summarize(asyncio.run(drive(base, body if "translated" not in name else small, "/v1/messages",
                                            args.requests, args.concurrency, headers)))
            g = summarize(asyncio.run(drive(gateway_url, body, "/v1/messages", args.requests, args.concurrency,
                                            headers)))
            print(f"{name:45} {b[0]:9.0f} {g[0]:8.0f} {g[0] / b[0]:6.2f} {b[1]:8.1f}ms {g[1]:6.1f}ms {g[2]:6.1f}ms")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
