"""Faults through the real Envoy: the gateway stays up for everyone, and whoever is hurt hears why.

Every test is bounded in time; each gateway it starts, it stops.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Gateway, standard_config

pytestmark = pytest.mark.e2e

HEADERS = {"content-type": "application/json", "x-api-key": "sk-ant-user", "anthropic-version": "2023-06-01"}


def _children(pid: int) -> dict[int, str]:
    """The processes `lunaroute up` started, with their command lines."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and stat.rsplit(")", 1)[1].split()[0] != "Z":
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return out


def _envoy_pid(gw: Gateway) -> int:
    return next(pid for pid, cmd in _children(gw.proc.pid).items() if "envoy" in cmd and "extproc" not in cmd)


def _workers(gw: Gateway) -> dict[int, str]:
    return {pid: cmd for pid, cmd in _children(gw.proc.pid).items() if " worker " in cmd}


@pytest.fixture()
def chain_gateway(tmp_path, anthropic_mock, openai_mock):
    """Claude models go to Anthropic with a fallback to the OpenAI-type provider."""
    config = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    config["routing"] = {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]}
    config["retries"] = {"base_interval_ms": 10, "max_interval_ms": 50}
    gw = Gateway(tmp_path, config, workers=1).start(env={"LR_TEST_OPENAI_KEY": "k"})
    yield gw
    gw.stop()


def test_concurrent_large_requests_on_a_fallback_chain_never_crash_envoy(chain_gateway) -> None:
    """Regression: Envoy 1.40 died of SIGSEGV here about every second round (README: Known issues)."""
    envoy = _envoy_pid(chain_gateway)
    body = json.dumps({"model": "claude-x", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "x" * (4 * 1024 * 1024)}]}).encode()

    def post(_: int) -> int:
        return chain_gateway.get("/v1/messages", method="POST", body=body, headers=HEADERS)[0]

    with ThreadPoolExecutor(8) as pool:
        for _ in range(4):
            assert list(pool.map(post, range(8))) == [200] * 8
    assert _envoy_pid(chain_gateway) == envoy
    assert "Caught Segmentation fault" not in chain_gateway.log()
