"""The real client: OpenAI's Codex CLI (`codex exec`, from npm) pointed at the gateway, against mock providers.

Codex speaks only the Responses API. It is configured offline through a `config.toml` in a temporary
`CODEX_HOME`: a custom model provider whose `base_url` is the gateway's `/v1`, `wire_api = "responses"`,
and an `env_key` naming the variable that holds the key it sends as `Authorization: Bearer`. It needs
no network and no login for that. CI installs Codex under `.cache/codex/` with npm, as it installs Claude
Code; elsewhere set LUNAROUTE_CODEX_BIN or put `codex` on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CODEX_KEY = "sk-codex-user"


def _codex_bin() -> str | None:
    for candidate in (os.environ.get("LUNAROUTE_CODEX_BIN"), str(ROOT / ".cache/codex/node_modules/.bin/codex"),
                      shutil.which("codex")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def codex() -> str:
    found = _codex_bin()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Codex CLI is not installed; CI installs it with npm (@openai/codex)")
        pytest.skip("Codex CLI not installed (npm install @openai/codex, or set LUNAROUTE_CODEX_BIN)")
    return found


def run_codex(codex: str, gateway, model: str, prompt: str, cwd: Path) -> subprocess.CompletedProcess:
    home = cwd / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(f"""\
model = "{model}"
model_provider = "lunaroute"

[model_providers.lunaroute]
name = "LunaRoute"
base_url = "{gateway.url}/v1"
env_key = "LUNAROUTE_TEST_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
""")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "CODEX_HOME": str(home),
           "LUNAROUTE_TEST_KEY": CODEX_KEY}
    return subprocess.run([codex, "exec", "--skip-git-repo-check", prompt], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _tool_prompt(cwd: Path) -> str:
    (cwd / "notes.txt").write_text("the secret word is pumpkin\n")
    return 'use the tool exec_command {"cmd": "cat notes.txt"}'


def test_codex_answers_a_prompt_through_a_chat_provider(codex, openai_gateway, openai_mock, tmp_path) -> None:
    proc = run_codex(codex, openai_gateway, "gpt-mock", "say hi", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Hello from mock OpenAI"
    seen = openai_mock.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.json()["messages"][-1] == {"role": "user", "content": "say hi"}
    assert seen.headers["authorization"] == "Bearer sk-test-openai-0123456789"  # the provider's key, not Codex's


def test_codex_completes_a_tool_round_trip_through_a_chat_provider(codex, openai_gateway, openai_mock,
                                                                   tmp_path) -> None:
    proc = run_codex(codex, openai_gateway, "gpt-mock", _tool_prompt(tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pumpkin" in proc.stdout  # the mock repeats the tool output Codex sent back
    first, second = openai_mock.requests[-2:]
    assert first.json()["messages"][-1]["role"] == "user"
    call, result = second.json()["messages"][-2:]
    assert call["tool_calls"][0]["function"]["name"] == "exec_command"
    assert result["role"] == "tool" and "pumpkin" in result["content"]


def test_codex_answers_a_prompt_through_an_anthropic_provider(codex, gateway, anthropic_mock, tmp_path) -> None:
    proc = run_codex(codex, gateway, "claude-sonnet-4-5", "say hi", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Hello from mock Anthropic"
    sent = anthropic_mock.requests[-1].json()
    assert sent["model"] == "claude-sonnet-4-5" and sent["stream"] is True
    prompt = sent["messages"][-1]["content"][-1]
    assert (prompt["type"], prompt["text"]) == ("text", "say hi")
    # Codex's long instructions are worth caching: a breakpoint on the conversation's end (issue #16)
    assert prompt.get("cache_control") == {"type": "ephemeral"}
    assert sent["system"]  # Codex's developer instructions


def test_codex_completes_a_tool_round_trip_through_an_anthropic_provider(codex, gateway, anthropic_mock,
                                                                         tmp_path) -> None:
    proc = run_codex(codex, gateway, "claude-sonnet-4-5", _tool_prompt(tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pumpkin" in proc.stdout
    first, second = anthropic_mock.requests[-2:]
    assert first.path == second.path == "/v1/messages"
    assert second.headers["x-api-key"] == CODEX_KEY  # auth: passthrough, moved into Anthropic's header
    sent = second.json()
    assert sent["messages"][-2]["content"][-1]["name"] == "exec_command"
    result = sent["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and "pumpkin" in result["content"]
    assert all("input_schema" in tool for tool in sent["tools"])  # web_search left out, functions kept
