"""The real client: Claude Code (`claude -p`, from npm) pointed at the gateway, against mock providers.

CI installs Claude Code (.ci/run); elsewhere set LUNAROUTE_CLAUDE_BIN or put `claude` on PATH.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import TEST_OPENAI_KEY, Gateway, standard_config

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def _claude_bin() -> str | None:
    for candidate in (os.environ.get("LUNAROUTE_CLAUDE_BIN"),
                      str(ROOT / ".cache/claude-code/node_modules/.bin/claude"), shutil.which("claude")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def claude() -> str:
    found = _claude_bin()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Claude Code is not installed; .ci/run installs it with npm")
        pytest.skip("Claude Code not installed (npm install @anthropic-ai/claude-code, or set LUNAROUTE_CLAUDE_BIN)")
    return found


def run_claude(claude: str, gateway, prompt: str, cwd: Path, *flags: str,
               **extra_env: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd / "home"), "ANTHROPIC_BASE_URL": gateway.url,
           "ANTHROPIC_API_KEY": "sk-ant-claude-code-user", "DISABLE_TELEMETRY": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1", **extra_env}
    (cwd / "home").mkdir(exist_ok=True)
    return subprocess.run([claude, "--model", "claude-sonnet-4-5", *flags, "-p", prompt], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_claude_code_works_through_anthropic_passthrough(claude, gateway, anthropic_mock, tmp_path) -> None:
    proc = run_claude(claude, gateway, "say hi", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Hello from mock Anthropic"
    seen = anthropic_mock.requests[-1]
    assert (seen.path, seen.query) == ("/v1/messages", "beta=true")
    assert seen.headers["x-api-key"] == "sk-ant-claude-code-user"
    assert "claude-code-20250219" in seen.headers["anthropic-beta"]


def test_claude_code_completes_a_tool_round_trip_against_an_openai_provider(
        claude, openai_gateway, openai_mock, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("the secret word is pumpkin\n")
    prompt = 'use the tool Read {"file_path": "%s"}' % (tmp_path / "notes.txt")
    proc = run_claude(claude, openai_gateway, prompt, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pumpkin" in proc.stdout
    first, second = openai_mock.requests[-2:]
    assert first.path == second.path == "/v1/chat/completions"
    assert first.query == ""  # Anthropic's ?beta=true stays behind
    assert second.json()["messages"][-1]["role"] == "tool"
    assert first.headers["authorization"] == "Bearer sk-test-openai-0123456789"


def test_after_a_marked_turn_to_a_reasoning_provider_the_next_turn_to_anthropic_works(
        claude, gateway, anthropic_mock, openai_mock, tmp_path) -> None:
    """One session: a marked turn to a DeepSeek/Kimi-style provider (unsigned thinking, `functions.Read:0`
    tool ids), then an unmarked turn that goes to Anthropic with that history."""
    (tmp_path / "notes.txt").write_text("the secret word is pumpkin\n")
    prompt = '[LUNAROUTE:gpt] with reasoning, use the tool Read {"file_path": "%s"}' % (tmp_path / "notes.txt")
    first = run_claude(claude, gateway, prompt, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "pumpkin" in first.stdout
    assert openai_mock.requests[-1].json()["messages"][-1]["tool_call_id"] == "functions.Read:0"
    second = run_claude(claude, gateway, "thanks", tmp_path, "--continue")
    assert second.returncode == 0, second.stderr + second.stdout
    assert second.stdout.startswith("tool said:")  # the Anthropic mock's answer: it accepted the history
    sent = anthropic_mock.requests[-1].json()["messages"]
    blocks = [b for m in sent if isinstance(m["content"], list) for b in m["content"]]
    assert any(b["type"] == "tool_use" and b["name"] == "Read" for b in blocks)  # the history went along
    assert not any(b["type"] == "thinking" and not b.get("signature") for b in blocks)
    ids = {b.get("id") or b.get("tool_use_id") for b in blocks if b["type"] in ("tool_use", "tool_result")}
    assert len(ids) == 1 and ids.pop().startswith("toolu_")  # mapped, and the same on both sides


GATEWAY_KEY = "lr-claude-code-user-9f8e7d6c5b4a39281706f5e4"


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory, anthropic_mock, openai_mock):
    """The standard providers behind a gateway key."""
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["access"] = {"keys": [{"name": "claude-user", "key_sha256": hashlib.sha256(GATEWAY_KEY.encode()).hexdigest()}]}
    gw = Gateway(tmp_path_factory.mktemp("cc_keyed"), cfg, workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    yield gw
    gw.stop()


def test_claude_code_sends_a_gateway_key_beside_its_own_login(claude, keyed_gateway, anthropic_mock,
                                                            tmp_path) -> None:
    """ANTHROPIC_CUSTOM_HEADERS carries the gateway key; Claude Code's own credentials reach Anthropic as
    they are, and the gateway key reaches no provider."""
    proc = run_claude(claude, keyed_gateway, "say hi", tmp_path,
                      ANTHROPIC_CUSTOM_HEADERS=f"x-lunaroute-key: {GATEWAY_KEY}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Hello from mock Anthropic"
    seen = anthropic_mock.requests[-1]
    assert seen.headers["x-api-key"] == "sk-ant-claude-code-user"
    assert all(GATEWAY_KEY not in v for r in anthropic_mock.requests for v in r.headers.values())
    deadline = time.monotonic() + 5  # Envoy flushes its access log every second
    while "key=claude-user" not in keyed_gateway.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "key=claude-user" in keyed_gateway.log()  # the access log names the key, never the key


def test_claude_code_with_a_gateway_key_as_its_api_key(claude, keyed_gateway, anthropic_mock, tmp_path) -> None:
    proc = run_claude(claude, keyed_gateway, "say hi", tmp_path, ANTHROPIC_API_KEY=GATEWAY_KEY)
    assert proc.returncode == 0, proc.stderr
    assert "x-api-key" not in anthropic_mock.requests[-1].headers  # the gateway key stays in the gateway


def test_claude_code_completes_a_tool_round_trip_against_a_responses_only_provider(
        claude, responses_gateway, responses_mock, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("the secret word is pumpkin\n")
    prompt = 'use the tool Read {"file_path": "%s"}' % (tmp_path / "notes.txt")
    proc = run_claude(claude, responses_gateway, prompt, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pumpkin" in proc.stdout
    first, second = responses_mock.requests[-2:]
    assert first.path == second.path == "/v1/responses"
    assert first.json()["store"] is False and first.json()["stream"] is True
    output = second.json()["input"][-1]
    assert output["type"] == "function_call_output" and "pumpkin" in output["output"]


def test_claude_code_session_is_recorded_with_pii_tokenized_also_in_what_the_provider_got(
        claude, anthropic_mock, openai_mock, tmp_path) -> None:
    """Recording on, `pii.redact_requests` with `tokenize`: the provider sees tokens instead of the
    e-mail address, and `lunaroute sessions show` shows the same turn under Claude Code's session id."""
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["recording"] = {"enabled": True, "dir": str(tmp_path / "sessions")}
    cfg["pii"] = {"mode": "tokenize", "redact_requests": True, "token_secret_env": "LR_TEST_PII_SECRET"}
    secret = "claude-code-pii-secret-0123"
    gw = Gateway(tmp_path, cfg, workers=1).start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY,
                                                       "LR_TEST_PII_SECRET": secret})
    try:
        proc = run_claude(claude, gw, "say hi to bob.smith@example.com", tmp_path,
                          LR_TEST_PII_SECRET=secret)
        assert proc.returncode == 0, proc.stderr
    finally:
        gw.stop()
    seen = anthropic_mock.requests[-1]
    token = "[EMAIL:" + hmac.new(secret.encode(), b"email:bob.smith@example.com", hashlib.sha256).hexdigest()[:12] + "]"
    assert b"bob.smith@example.com" not in seen.body and token.encode() in seen.body
    session = seen.headers["x-claude-code-session-id"]
    shown = subprocess.run([sys.executable, "-m", "extproc.cli", "sessions", "show", session, "--json",
                            "--config", str(gw.config_path)], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    turns = orjson.loads(shown.stdout)
    prompt_turn = next(t for t in turns if token in orjson.dumps(t["request"]).decode())
    assert prompt_turn["response"]["content"] == [{"type": "text", "text": "Hello from mock Anthropic"}]
    assert (prompt_turn["provider"], prompt_turn["status"], prompt_turn["input"], prompt_turn["output"]) == (
        "anthropic", 200, 26, 7)
    assert "bob.smith@example.com" not in shown.stdout and "sk-ant-claude-code-user" not in shown.stdout
