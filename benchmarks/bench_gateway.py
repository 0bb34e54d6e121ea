"""The gateway against bare Envoy, measured in the same run with a compiled load generator (`hey`).

Everything runs on loopback: a **mock provider** answering canned provider responses from one
uvloop + httptools process (`mock_server.py`; measured directly too, so it is seen never to be the
bottleneck: it must serve at least twice bare Envoy's rate), a **bare Envoy** proxying every path to
it, and the **gateway** (`lunaroute up`: Envoy, its gate and fast path, ext_proc workers) in front of the
same mock. The fast path's rows include its metering (usage read by Envoy, settled by the workers after
the response: their CPU per request is the metering's). Each scenario sends the same requests through both and reports
requests/s and p50/p99 under load, the latency the gateway adds at c=1 and at a fixed 100 rps, time to
first byte for SSE, the workers' CPU per request, and Envoy's and the workers' RSS. Writes JSON and a
PNG chart. Not a test: nothing here asserts on time (`--smoke` runs seconds, for CI's sanity check).

    python benchmarks/bench_gateway.py [--requests N] [--concurrency C] [--out DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extproc.supervisor import find_envoy  # noqa: E402
from tests.mock_providers import free_port  # noqa: E402
from tests.processes import envoy_pid, worker_pids  # noqa: E402

_T = "type.googleapis.com/"
SMALL = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
JSON_HEADERS = ["content-type: application/json", "x-api-key: bench-user", "anthropic-version: 2023-06-01"]
BENCH_KEYS = {"BENCH_OPENAI_KEY": "sk-bench", "BENCH_POOL_A": "sk-ant-bench-a", "BENCH_POOL_B": "sk-ant-bench-b",
              "BENCH_POOL_C": "sk-ant-bench-c"}
STREAM = "x-bench-stream: 1"  # tells the mock to answer with SSE (it cannot read the body)


def start(cmd: list[str], log: Path, ready: str | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start a process logging to a file (a pipe nobody drains would stall it under load)."""
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 60
    while ready and ready.encode() not in log.read_bytes():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} did not become ready; see {log}")
        time.sleep(0.1)
    return proc


def ensure_hey() -> str:
    """`hey` (Debian package), installed here when missing and we may."""
    found = shutil.which("hey")
    if found:
        return found
    if os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "install", "-y", "-qq", "hey"], ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "hey"]):
            subprocess.run(cmd, env=env, capture_output=True, check=False)
            if shutil.which("hey"):
                return shutil.which("hey") or "hey"
    raise SystemExit("benchmark: `hey` is needed (apt-get install hey)")


# -- the mock provider's answers (served by mock_server.py) --------------------------------------------


def _sse(events: list[tuple[str | None, dict | str]]) -> str:
    out = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {payload}\n\n")
    return "".join(out)


def canned() -> dict[str, tuple[str, str]]:
    """(content-type, body) per mock route."""
    usage = {"input_tokens": 12, "output_tokens": 6}
    msg = {"id": "msg_b", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "end_turn",
           "stop_sequence": None, "usage": usage, "content": [{"type": "text", "text": "Hello from the mock"}]}
    a_sse = _sse([
        ("message_start", {"type": "message_start", "message": {**msg, "content": [], "stop_reason": None}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        *[("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": w}}) for w in ("Hello ", "from ", "mock")],
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 6}}),
        ("message_stop", {"type": "message_stop"})])
    base = {"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-x"}
    chat = {"id": "chatcmpl-b", "object": "chat.completion", "created": 1700000000, "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the mock"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}}
    o_sse = _sse([
        *[(None, {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]})
          for d in ({"role": "assistant", "content": ""}, {"content": "Hello "}, {"content": "from "},
                    {"content": "mock"})],
        (None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        (None, {**base, "choices": [], "usage": chat["usage"]}), (None, "[DONE]")])
    emb = {"object": "list", "model": "e", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
           "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    return {"messages_sse": ("text/event-stream", a_sse), "messages": ("application/json", json.dumps(msg)),
            "chat_sse": ("text/event-stream", o_sse), "chat": ("application/json", json.dumps(chat)),
            "embeddings": ("application/json", json.dumps(emb)),
            "count": ("application/json", '{"input_tokens": 12}')}


def _listener(port: int, routes: list[dict]) -> dict:
    return {"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "per_connection_buffer_limit_bytes": 32 * 1024 * 1024,
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": _T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "b", "route_config": {"virtual_hosts": [{"name": "b", "domains": ["*"],
                                                                        "routes": routes}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": _T + "envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}


def bare_bootstrap(port: int, mock_port: int) -> dict:
    """Bare Envoy: the same kind of listener, every path proxied to the mock, nothing else."""
    cluster = {"name": "mock", "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": "mock", "endpoints": [{"lb_endpoints": [{"endpoint": {
                   "address": {"socket_address": {"address": "127.0.0.1", "port_value": mock_port}}}}]}]}}
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "mock", "timeout": "0s"}}]
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": [_listener(port, routes)], "clusters": [cluster]}}


LITELLM_VENV = ROOT / ".cache" / "litellm-venv"
LITELLM_KEY = "sk-bench-litellm-master"  # LiteLLM refuses to start without one
# The scenarios a peer gateway can serve too (same request, same mock, same bare Envoy baseline).
PEER_SCENARIOS = ("passthrough (fast path, metered)", "OpenAI -> Anthropic")


def start_litellm(port: int, mock: str, tmp: Path) -> subprocess.Popen:
    """LiteLLM's proxy in its own venv (created here on first use), routing claude-x to the mock."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    cfg = {"model_list": [{"model_name": "claude-x", "litellm_params": {
        "model": "anthropic/claude-x", "api_base": mock, "api_key": "bench"}}],
        "general_settings": {"master_key": LITELLM_KEY}}
    (tmp / "litellm.yaml").write_text(yaml.safe_dump(cfg))
    return start([str(binary), "--config", str(tmp / "litellm.yaml"), "--host", "127.0.0.1", "--port", str(port)],
                 tmp / "litellm.log", ready="Uvicorn running")


def gateway_config(port: int, extproc_port: int, workers: int, mock: str) -> dict:
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "extproc": {"host": "127.0.0.1", "port": extproc_port, "workers": workers},
        "log_level": "warning",
        "default_provider": "anthropic",
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": mock, "auth": "passthrough"},
            "claude2": {"type": "anthropic", "base_url": mock, "auth": "passthrough"},
            "gpt": {"type": "openai", "base_url": mock + "/v1", "api_key_env": "BENCH_OPENAI_KEY", "model": "gpt-x"},
            # a credential pool of three keys (extproc.pools): the start key is picked in Envoy
            "pooled": {"type": "anthropic", "base_url": mock, "keys": [
                {"name": "a", "api_key_env": "BENCH_POOL_A", "weight": 2}, {"name": "b", "api_key_env": "BENCH_POOL_B"},
                {"name": "c", "api_key_env": "BENCH_POOL_C"}]},
        },
        "routing": {"rules": [{"model": "chain-*", "provider": "anthropic", "fallbacks": ["gpt"]},
                              {"model": "pool-*", "provider": "pooled"}]},
        "bypass": {"enabled": True, "provider": "gpt"},
    }


# -- scenarios ---------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    path: str
    body: bytes
    headers: list[str] = field(default_factory=lambda: list(JSON_HEADERS))
    sse: bool = False


def scenarios(smoke: bool) -> list[Scenario]:
    recorded = json.loads((ROOT / "tests/fixtures/claude_code/recorded_first_turn.json").read_text())["body"]
    cc = {**recorded, "stream": False}

    def marked(doc: dict, provider: str) -> dict:
        doc = json.loads(json.dumps(doc))
        prompt = next(m for m in reversed(doc["messages"]) if m["role"] == "user")
        if isinstance(prompt["content"], str):
            prompt["content"] = f"[LUNAROUTE:{provider}] " + prompt["content"]
        else:
            prompt["content"].append({"type": "text", "text": f"[LUNAROUTE:{provider}]"})
        return doc

    def j(doc: dict) -> bytes:
        return json.dumps(doc).encode()

    chat = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}
    chat_h = ["content-type: application/json", "authorization: Bearer bench-user"]
    out = [
        Scenario("bypass (/v1/embeddings)", "/v1/embeddings", j({"model": "e", "input": "hi"}), chat_h),
        Scenario("passthrough (fast path, metered)", "/v1/messages", j(SMALL)),
        Scenario("passthrough SSE (fast path, metered)", "/v1/messages", j({**SMALL, "stream": True}),
                 [*JSON_HEADERS, STREAM], sse=True),
        Scenario("Claude Code 115 KB, no marker (fast path)", "/v1/messages", j(cc)),
        Scenario("marker-routed, same dialect", "/v1/messages", j(marked(SMALL, "claude2"))),
        Scenario("Claude Code 115 KB, marker", "/v1/messages", j(marked(cc, "claude2"))),
        Scenario("Anthropic -> OpenAI", "/v1/messages", j(marked(SMALL, "gpt"))),
        Scenario("Anthropic -> OpenAI, SSE", "/v1/messages", j({**marked(SMALL, "gpt"), "stream": True}),
                 [*JSON_HEADERS, STREAM], sse=True),
        Scenario("OpenAI -> Anthropic", "/v1/chat/completions", j(chat), chat_h),
        Scenario("OpenAI -> Anthropic, SSE", "/v1/chat/completions", j({**chat, "stream": True}),
                 [*chat_h, STREAM], sse=True),
        Scenario("fallback-chain route", "/v1/messages", j({**SMALL, "model": "chain-x"})),
        Scenario("pooled passthrough, 3 keys (fast path, metered)", "/v1/messages", j({**SMALL, "model": "pool-x"}),
                 [*JSON_HEADERS, "x-claude-code-session-id: bench-session-1"]),
    ]
    if smoke:
        return [out[1], out[6]]
    return out


# -- measuring ---------------------------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    ttfb_p50_ms: float
    errors: int


def hey(binary: str, url: str, sc: Scenario, body_file: Path, n: int, c: int, qps: int | None = None) -> Run:
    cmd = [binary, "-n", str(n), "-c", str(c), "-m", "POST", "-D", str(body_file), "-o", "csv",
           "-disable-compression", "-t", "30"]
    for h in sc.headers:
        cmd += ["-H", h]
    if qps:
        cmd += ["-q", str(qps)]
    started = time.perf_counter()
    out = subprocess.run([*cmd, url + sc.path], capture_output=True, text=True, timeout=600, check=True).stdout
    wall = time.perf_counter() - started
    rows = list(csv.DictReader(io.StringIO(out)))
    ok = [r for r in rows if r.get("status-code") == "200"]
    if not ok:
        raise RuntimeError(f"{sc.name} via {url}: no 200 answer ({len(rows)} rows)")
    lat = sorted(float(r["response-time"]) * 1000 for r in ok)
    ttfb = sorted(float(r["Response-delay"]) * 1000 for r in ok)
    span = max(float(r["offset"]) + float(r["response-time"]) for r in rows) if rows else wall
    return Run(rps=len(ok) / span, p50_ms=statistics.median(lat), p99_ms=lat[max(0, int(len(lat) * 0.99) - 1)],
               ttfb_p50_ms=statistics.median(ttfb), errors=len(rows) - len(ok))


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Gateway:
    proc: subprocess.Popen

    def workers(self) -> list[int]:
        return list(worker_pids(self.proc.pid))

    def envoy(self) -> int:
        return envoy_pid(self.proc.pid)

    def worker_cpu_s(self) -> float:
        return sum(_cpu_s(p) for p in self.workers())

    def rss(self) -> dict[str, float]:
        return {"envoy_mb": round(_rss_mb(self.envoy()), 1),
                "workers_mb": round(sum(_rss_mb(p) for p in self.workers()), 1)}


def measure(args: argparse.Namespace) -> dict:
    binary = ensure_hey()
    envoy = find_envoy()
    tmp = Path(tempfile.mkdtemp(prefix="lunaroute-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        mock_port, bare_port, gw_port = free_port(), free_port(), free_port()
        (tmp / "bare.yaml").write_text(yaml.safe_dump(bare_bootstrap(bare_port, mock_port)))
        procs.append(start([sys.executable, str(ROOT / "benchmarks" / "mock_server.py"), "--port", str(mock_port)],
                           tmp / "mock.log", ready="mock listening"))
        procs.append(start([envoy, "--disable-hot-restart", "-l", "error", "-c", str(tmp / "bare.yaml")],
                           tmp / "bare.log"))
        cfg = gateway_config(gw_port, free_port(args.workers), args.workers, f"http://127.0.0.1:{mock_port}")
        (tmp / "gw.yaml").write_text(yaml.safe_dump(cfg))
        gw_proc = start([sys.executable, "-m", "extproc.cli", "up", "--config", str(tmp / "gw.yaml")],
                        tmp / "gateway.log", ready="ANTHROPIC_BASE_URL", env=BENCH_KEYS)
        procs.append(gw_proc)
        gw = Gateway(gw_proc)
        time.sleep(1.0)
        urls = {"mock": f"http://127.0.0.1:{mock_port}", "bare": f"http://127.0.0.1:{bare_port}",
                "gateway": f"http://127.0.0.1:{gw_port}"}
        if args.peer == "litellm":
            peer_port = free_port()
            procs.append(start_litellm(peer_port, f"http://127.0.0.1:{mock_port}", tmp))
            urls["litellm"] = f"http://127.0.0.1:{peer_port}"
        rss_start = gw.rss()
        n, c = args.requests, args.concurrency
        n1 = max(50, n // 10)
        results = []
        for sc in scenarios(args.smoke):
            if args.only and args.only not in sc.name:
                continue
            body = tmp / "body.json"
            body.write_bytes(sc.body)
            row: dict = {"scenario": sc.name, "sse": sc.sse}
            for side in ("bare", "gateway"):
                hey(binary, urls[side], sc, body, min(n, 200), c)  # warm up
                cpu0 = gw.worker_cpu_s()
                load = hey(binary, urls[side], sc, body, n, c)
                cpu = gw.worker_cpu_s() - cpu0
                row[side] = {"load": asdict(load)}
                if side == "gateway":
                    row["worker_cpu_us_per_request"] = round(cpu / n * 1e6, 1)
                if not args.smoke:
                    row[side]["c1"] = asdict(hey(binary, urls[side], sc, body, n1, 1))
                    row[side]["at_100rps"] = asdict(hey(binary, urls[side], sc, body, min(n, 500), 10, qps=10))
            row["ratio_rps"] = round(row["gateway"]["load"]["rps"] / row["bare"]["load"]["rps"], 3)
            if "litellm" in urls and sc.name in PEER_SCENARIOS:
                try:
                    auth = [h for h in sc.headers if not h.startswith(("x-api-key", "authorization"))]
                    peer_sc = Scenario(sc.name, sc.path, sc.body, [*auth, f"authorization: Bearer {LITELLM_KEY}"],
                                       sc.sse)
                    peer = hey(binary, urls["litellm"], peer_sc, body, max(200, n // 10), c)
                    row["litellm"] = {"load": asdict(peer),
                                      "ratio_rps": round(peer.rps / row["bare"]["load"]["rps"], 3)}
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    row["litellm"] = {"error": str(exc)[:300]}
            if not args.smoke:
                row["added_p50_c1_ms"] = round(row["gateway"]["c1"]["p50_ms"] - row["bare"]["c1"]["p50_ms"], 3)
                row["added_p50_100rps_ms"] = round(row["gateway"]["at_100rps"]["p50_ms"]
                                                   - row["bare"]["at_100rps"]["p50_ms"], 3)
                if sc.sse:
                    row["added_ttfb_c1_ms"] = round(row["gateway"]["c1"]["ttfb_p50_ms"]
                                                    - row["bare"]["c1"]["ttfb_p50_ms"], 3)
            results.append(row)
            print(f"{sc.name:44} ratio {row['ratio_rps']:.2f}  gw {row['gateway']['load']['rps']:.0f} rps  "
                  f"bare {row['bare']['load']['rps']:.0f} rps  cpu {row['worker_cpu_us_per_request']} us/req",
                  flush=True)
        small = next(s for s in scenarios(args.smoke) if s.name.startswith("passthrough"))
        (tmp / "body.json").write_bytes(small.body)
        mock_direct = hey(binary, urls["mock"], small, tmp / "body.json", n, c)
        bare_direct = hey(binary, urls["bare"], small, tmp / "body.json", n, c)
        return {
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                        "workers": args.workers, "concurrency": c, "requests": n},
            "mock_direct_rps": round(mock_direct.rps, 1),
            "bare_small_rps": round(bare_direct.rps, 1),
            "rss_start": rss_start, "rss_end": gw.rss(),
            "scenarios": results,
        }
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


# -- reporting ---------------------------------------------------------------------------------------


def table(report: dict) -> str:
    """A Markdown table (what the README shows)."""
    full = "added_p50_c1_ms" in report["scenarios"][0]
    head = "| scenario | gateway rps | bare rps | ratio | p50 / p99 ms | worker CPU µs/req |"
    head += " added p50 c=1 | added p50 @100 rps | added TTFB (SSE) |" if full else ""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in report["scenarios"]:
        g, b = r["gateway"]["load"], r["bare"]["load"]
        line = (f"| {r['scenario']} | {g['rps']:.0f} | {b['rps']:.0f} | {r['ratio_rps']:.2f} | "
                f"{g['p50_ms']:.1f} / {g['p99_ms']:.1f} | {r['worker_cpu_us_per_request']:.0f} |")
        if full:
            ttfb = f"{r['added_ttfb_c1_ms']:+.2f} ms" if "added_ttfb_c1_ms" in r else ""
            line += f" {r['added_p50_c1_ms']:+.2f} ms | {r['added_p50_100rps_ms']:+.2f} ms | {ttfb} |"
        lines.append(line)
    return "\n".join(lines)


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["scenarios"]
    names = [r["scenario"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    ax.barh(names, [r["ratio_rps"] for r in rows], color=["#3a7" if "fast" in n or "bypass" in n else "#37a"
                                                          for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("gateway rps / bare Envoy rps (same run, same mock)")
    ax.set_xlim(0, 1.1)
    for i, r in enumerate(rows):
        ax.text(r["ratio_rps"] + 0.01, i, f"{r['ratio_rps']:.2f}", va="center", fontsize=8)
    m = report["machine"]
    ax.set_title(f"LunaRoute vs bare Envoy, {m['cores']} cores, c={m['concurrency']}, {m['workers']} workers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=4000, help="requests per scenario and side (default 4000)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--smoke", action="store_true", help="a few hundred requests, two scenarios (CI)")
    ap.add_argument("--only", help="run only the scenarios whose name contains this text")
    ap.add_argument("--peer", choices=["litellm"], help="also drive LiteLLM's proxy (own venv) for the same table")
    args = ap.parse_args(argv)
    if args.smoke:
        args.requests = min(args.requests, 300)
    report = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2))
    (args.out / "latest.md").write_text(table(report) + "\n")
    chart(report, args.out / "latest.png")
    print()
    print(table(report))
    for r in report["scenarios"]:
        if "litellm" in r and "load" in r["litellm"]:
            print(f"LiteLLM, {r['scenario']}: {r['litellm']['load']['rps']:.0f} rps, "
                  f"ratio to bare Envoy {r['litellm']['ratio_rps']:.3f}")
    print(f"\nmock served directly: {report['mock_direct_rps']:.0f} rps (bare Envoy through it, same request: "
          f"{report['bare_small_rps']:.0f} rps); RSS start {report['rss_start']}, "
          f"end {report['rss_end']}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
