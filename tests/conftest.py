"""End-to-end fixtures: mock providers, and the real gateway (`lunaroute up`: Envoy + ext_proc workers).

Every process a fixture starts, it stops. Ports are picked free at runtime.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from hypothesis import settings

from tests.mock_providers import MockAnthropic, MockOpenAI, MockResponses, free_port

# CI explores the same examples every run (a red CI must be reproducible); locally they vary.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

FIXTURES = Path(__file__).parent / "fixtures"
TEST_OPENAI_KEY = "sk-test-openai-0123456789"
TEST_ANTHROPIC_KEY = "sk-ant-test-provider-key"


class Gateway:
    """`lunaroute up` in a subprocess, exactly as a user runs it."""

    def __init__(self, workdir: Path, config: dict, workers: int = 2) -> None:
        self.workdir = workdir
        self.port = free_port()
        config = {
            **config,
            "listen": {"host": "127.0.0.1", "port": self.port},
            "extproc": {**config.get("extproc", {}), "host": "127.0.0.1", "port": free_port(workers),
                        "workers": workers},
        }
        self.config = config
        self.config_path = workdir / "lunaroute.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "gateway.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str] | None = None, timeout_s: float = 30) -> Gateway:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "extproc.cli", "up", "--config", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            if b"ANTHROPIC_BASE_URL" in self.log_path.read_bytes():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, method: str = "GET", headers: dict | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.url + path, method=method, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture(scope="session")
def anthropic_mock() -> Iterator[MockAnthropic]:
    mock = MockAnthropic().start()
    yield mock
    mock.stop()


@pytest.fixture(scope="session")
def openai_mock() -> Iterator[MockOpenAI]:
    mock = MockOpenAI().start()
    yield mock
    mock.stop()


@pytest.fixture(scope="session")
def responses_mock() -> Iterator[MockResponses]:
    mock = MockResponses().start()
    yield mock
    mock.stop()


@pytest.fixture(autouse=True)
def _fresh_mocks(request: pytest.FixtureRequest) -> None:
    for name in ("anthropic_mock", "openai_mock", "responses_mock"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


def standard_config(anthropic_url: str, openai_url: str) -> dict:
    """Anthropic passthrough by default, an OpenAI provider with its own key, OpenAI for bypass."""
    return {
        "default_provider": "anthropic",
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": anthropic_url, "auth": "passthrough"},
            "gpt": {"type": "openai", "base_url": openai_url + "/v1", "api_key_env": "LR_TEST_OPENAI_KEY",
                    "model": "gpt-mock", "models": ["gpt-mock", "gpt-mock-mini"]},
        },
        "bypass": {"enabled": True, "provider": "gpt"},
    }


def _running(tmp_path_factory: pytest.TempPathFactory, name: str, config: dict, workers: int) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp(name), config, workers=workers)
    gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, anthropic_mock: MockAnthropic,
            openai_mock: MockOpenAI) -> Iterator[Gateway]:
    yield from _running(tmp_path_factory, "gw", standard_config(anthropic_mock.base_url, openai_mock.base_url), 2)


@pytest.fixture(scope="session")
def openai_gateway(tmp_path_factory: pytest.TempPathFactory, anthropic_mock: MockAnthropic,
                   openai_mock: MockOpenAI) -> Iterator[Gateway]:
    """The same providers, but an OpenAI-type provider is the default: Claude Code's requests get translated."""
    config = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    config["default_provider"] = "gpt"
    yield from _running(tmp_path_factory, "gw_openai", config, 1)


@pytest.fixture(scope="session")
def fallback_gateway(tmp_path_factory: pytest.TempPathFactory, anthropic_mock: MockAnthropic,
                     openai_mock: MockOpenAI) -> Iterator[Gateway]:
    """Claude models go to Anthropic and fall back to the OpenAI-type provider."""
    config = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    config["routing"] = {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]}
    config["retries"] = {"base_interval_ms": 10, "max_interval_ms": 50}
    yield from _running(tmp_path_factory, "gw_fallback", config, 1)


@pytest.fixture(scope="session")
def responses_gateway(tmp_path_factory: pytest.TempPathFactory, anthropic_mock: MockAnthropic,
                      openai_mock: MockOpenAI, responses_mock: MockResponses) -> Iterator[Gateway]:
    """A provider that speaks only the Responses API is the default: Anthropic and Chat clients get
    translated to it, Responses clients pass through."""
    config = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    config["providers"] = {"resp": {"type": "openai-responses", "base_url": responses_mock.base_url + "/v1",
                                    "api_key_env": "LR_TEST_OPENAI_KEY", "model": "resp-mock"},
                           **config["providers"]}
    config["default_provider"] = "resp"
    yield from _running(tmp_path_factory, "gw_responses", config, 1)


class RedisServer:
    def __init__(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            if os.environ.get("CI"):
                pytest.fail("redis-server is not installed; .ci/run installs it with apt-get")
            pytest.skip("redis-server not installed (apt-get install redis-server)")
        self.port = free_port()
        self.proc = subprocess.Popen([server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()
