"""The compose topology, on loopback: the `render` service's bootstrap, the `extproc` service's
`lunaroute serve`, and Envoy started on its own with that bootstrap — three processes, as in compose.

Docker is not available here, so the shared socket volume becomes a temporary directory, the listener
a loopback port and the providers mock ones; everything else is deploy/compose/config.yaml as shipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import pytest
import yaml

from extproc.supervisor import find_envoy
from tests.mock_providers import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-compose-openai-key"


@pytest.fixture(scope="module")
def compose_topology(tmp_path_factory, anthropic_mock, openai_mock):
    tmp = tmp_path_factory.mktemp("compose")
    cfg = yaml.safe_load((ROOT / "deploy" / "compose" / "config.yaml").read_text())
    port = free_port()
    cfg["listen"] = {"host": "127.0.0.1", "port": port}
    cfg["admin"] = {"host": "127.0.0.1", "port": 0}
    cfg["extproc"]["socket_dir"] = str(tmp)  # the `extproc-sockets` volume both services mount
    cfg["providers"]["anthropic"]["base_url"] = anthropic_mock.base_url
    cfg["providers"]["openai"]["base_url"] = openai_mock.base_url + "/v1"
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cli = [sys.executable, "-m", "extproc.cli"]
    # service `render`
    subprocess.run([*cli, "render-envoy", "--config", str(path), "-o", str(tmp / "envoy.yaml")], check=True,
                   timeout=60)
    logs = (tmp / "extproc.log").open("wb"), (tmp / "envoy.log").open("wb")
    # service `extproc`
    extproc = subprocess.Popen([*cli, "serve", "--config", str(path)], stdout=logs[0], stderr=subprocess.STDOUT)
    # service `envoy`, with the provider key in its environment (compose's env_file)
    envoy = subprocess.Popen([find_envoy(), "-c", str(tmp / "envoy.yaml"), "--disable-hot-restart", "-l", "warn"],
                             stdout=logs[1], stderr=subprocess.STDOUT, env={**os.environ, "OPENAI_API_KEY": KEY})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        client = anthropic.Anthropic(base_url=url, api_key="sk-ant-user", max_retries=0)
        while time.monotonic() < deadline:
            try:
                if client.get("/readyz", cast_to=object) is not None:
                    break
            except anthropic.APIError:
                time.sleep(0.2)
        yield url
    finally:
        for proc in (envoy, extproc):
            proc.terminate()
        for proc in (envoy, extproc):
            proc.wait(30)


def test_claude_code_style_passthrough_through_the_compose_topology(compose_topology, anthropic_mock) -> None:
    client = anthropic.Anthropic(base_url=compose_topology, api_key="sk-ant-user", max_retries=0)
    msg = client.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hello from mock Anthropic"
    assert anthropic_mock.requests[-1].path == "/v1/messages"


def test_marker_reaches_the_openai_provider_with_the_key_from_envoys_environment(compose_topology,
                                                                                 openai_mock) -> None:
    client = anthropic.Anthropic(base_url=compose_topology, api_key="sk-ant-user", max_retries=0)
    msg = client.messages.create(model="claude-x", max_tokens=5,
                                 messages=[{"role": "user", "content": "[LUNAROUTE:openai] hi"}])
    assert msg.content[0].text == "Hello from mock OpenAI"
    seen = openai_mock.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.json()["model"] == "gpt-5.1"
