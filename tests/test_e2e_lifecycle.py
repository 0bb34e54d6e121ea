"""`lunaroute up` as a process: it starts, serves, stops cleanly, and fails loudly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, Gateway, standard_config
from tests.processes import children

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    return list(children(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_bypass_disabled_gives_unknown_paths_a_json_404(tmp_path, anthropic_mock, openai_mock) -> None:
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["bypass"] = {"enabled": False}
    gw = Gateway(tmp_path, cfg, workers=1).start(env={"LR_TEST_OPENAI_KEY": "k"})
    try:
        status, headers, body = gw.get("/v1/embeddings", method="POST", body=b"{}")
        assert status == 404
        assert headers["content-type"] == "application/json"
        assert "bypass is disabled" in json.loads(body)["error"]["message"]
        assert openai_mock.requests == []
        assert gw.get("/healthz")[0] == 200
    finally:
        gw.stop()


def test_sigterm_stops_envoy_and_workers(tmp_path, anthropic_mock, openai_mock) -> None:
    gw = Gateway(tmp_path, standard_config(anthropic_mock.base_url, openai_mock.base_url))
    gw.start(env={"LR_TEST_OPENAI_KEY": "k"})
    kids = _children(gw.proc.pid)
    assert len(kids) == 3  # two workers and Envoy
    assert gw.stop() == 0
    deadline = time.monotonic() + 10
    while any(_alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(k) for k in kids)


def _worker_pids(gw: Gateway) -> list[int]:
    return [k for k in _children(gw.proc.pid)
            if "worker" in Path(f"/proc/{k}/cmdline").read_bytes().decode(errors="replace")]


def test_a_dead_envoy_stops_everything_with_a_clear_message(tmp_path, anthropic_mock, openai_mock) -> None:
    gw = Gateway(tmp_path, standard_config(anthropic_mock.base_url, openai_mock.base_url), workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": "k"})
    workers = _worker_pids(gw)
    envoy = next(k for k in _children(gw.proc.pid) if k not in workers)
    os.kill(envoy, signal.SIGKILL)
    assert gw.proc.wait(30) == 1
    assert "lunaroute: envoy exited with code -9; stopping the rest" in gw.log()
    assert not any(_alive(w) for w in workers)


def test_a_crash_looping_worker_stops_the_gateway_and_says_so(tmp_path, anthropic_mock, openai_mock) -> None:
    gw = Gateway(tmp_path, standard_config(anthropic_mock.base_url, openai_mock.base_url), workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": "k"})
    killed: set[int] = set()
    deadline = time.monotonic() + 30
    while gw.proc.poll() is None and time.monotonic() < deadline:
        for pid in _worker_pids(gw):
            if pid not in killed:
                killed.add(pid)
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    assert gw.proc.wait(5) == 1
    assert len(killed) == 5  # four restarts, then the fifth death within a minute is a loop
    log = gw.log()
    assert log.count("exited with code -9; restarting it") == 4
    assert "5 worker deaths within 60s is a crash loop" in log and "stopping the rest" in log


def test_missing_provider_key_stops_startup_with_one_line(tmp_path, anthropic_mock, openai_mock) -> None:
    gw = Gateway(tmp_path, standard_config(anthropic_mock.base_url, openai_mock.base_url))
    env = {k: v for k, v in os.environ.items() if k != "LR_TEST_OPENAI_KEY"}
    proc = subprocess.run([sys.executable, "-m", "extproc.cli", "up", "--config", str(gw.config_path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("lunaroute: config error: providers.gpt.api_key_env: environment variable "
                                   "LR_TEST_OPENAI_KEY is not set; export it, or use api_key_file")


@pytest.mark.parametrize("fixture", ["bad_url.yaml", "bad_rule.yaml", "bad_yaml.yaml"])
def test_bad_config_stops_up_before_anything_starts(fixture: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "extproc.cli", "up", "--config",
                           str(FIXTURES / "configs" / fixture)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("lunaroute: config error:") and proc.stderr.count("\n") == 1


def test_check_validates_config_and_bootstrap(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "extproc.cli", "check", "--config",
                           str(FIXTURES / "configs" / "full.yaml")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OPENAI_API_KEY": "x"})
    # the fixture names a key file that does not exist here: check says so and fails
    assert proc.returncode == 2 and "providers.local.api_key_file" in proc.stderr


def test_render_envoy_writes_a_bootstrap(tmp_path) -> None:
    out = tmp_path / "envoy.yaml"
    proc = subprocess.run([sys.executable, "-m", "extproc.cli", "render-envoy", "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "provider_anthropic" in out.read_text()


def test_check_passes_on_the_defaults() -> None:
    proc = subprocess.run([sys.executable, "-m", "extproc.cli", "check"], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if k != "LUNAROUTE_CONFIG"})
    assert proc.returncode == 0, proc.stderr
    assert "envoy bootstrap OK" in proc.stdout


def test_readyz_is_503_when_no_worker_answers(tmp_path, anthropic_mock, openai_mock) -> None:
    gw = Gateway(tmp_path, standard_config(anthropic_mock.base_url, openai_mock.base_url), workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": "k"})
    worker = next(k for k in _children(gw.proc.pid)
                  if "worker" in Path(f"/proc/{k}/cmdline").read_bytes().decode(errors="replace"))
    os.kill(worker, signal.SIGSTOP)  # alive but silent: Envoy's health checks take it out
    try:
        deadline = time.monotonic() + 20
        status, body = 0, b""
        while time.monotonic() < deadline and status != 503:
            status, _, body = gw.get("/readyz")
            time.sleep(0.3)
        assert status == 503 and json.loads(body)["status"] == "unavailable"
    finally:
        os.kill(worker, signal.SIGCONT)
        gw.stop()
