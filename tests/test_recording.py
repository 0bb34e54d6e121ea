"""Session records: the routing decision per request, in one file per session, never a secret."""

from __future__ import annotations

from pathlib import Path

import orjson

from extproc import config
from extproc.exchange import Exchange, Gateway
from extproc.observe.recording import SessionRecorder

OPENAI_JSON = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-5.1",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}


def _gateway(tmp_path: Path) -> Gateway:
    return Gateway(config.parse({
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"},
            "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K", "model": "gpt-5.1"},
        },
        "recording": {"enabled": True, "dir": str(tmp_path)},
    }, env={}))


def test_a_marked_turn_is_recorded_with_provider_and_model_override_and_no_secret(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    ex = Exchange(gw)
    ex.on_request_headers({":method": "POST", ":path": "/v1/messages", "x-api-key": "sk-ant-very-secret",
                           "x-claude-code-session-id": "abc-123"}, False)
    ex.on_request_body(orjson.dumps({"model": "claude-x", "max_tokens": 5,
                                     "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]}))
    ex.on_response_headers({":status": "200", "content-type": "application/json"})
    ex.on_response_body(orjson.dumps(OPENAI_JSON), True)
    (path,) = tmp_path.glob("*/abc-123.jsonl")
    text = path.read_text()
    route, response = (orjson.loads(line) for line in text.splitlines())
    assert route["provider"] == "lunaroute:gpt" and route["reason"] == "marker"
    assert route["model_override"] == "gpt-5.1" and route["model"] == "claude-x"
    assert response["status"] == 200
    assert response["usage"] == {"input": 10, "output": 3, "cache_read": 0, "cache_write": 0}
    assert "sk-ant-very-secret" not in text and "hi" not in text


def test_a_codex_turn_is_recorded_under_codexs_session_id(tmp_path: Path) -> None:
    ex = Exchange(_gateway(tmp_path))
    ex.on_request_headers({":method": "POST", ":path": "/v1/responses", "authorization": "Bearer sk-codex",
                           "session-id": "01a2-codex"}, False)
    ex.on_request_body(orjson.dumps({"model": "gpt-x", "store": False, "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "[LUNAROUTE:gpt] hi"}]}]}))
    ex.on_response_headers({":status": "200", "content-type": "application/json"})
    ex.on_response_body(orjson.dumps(OPENAI_JSON), True)
    (path,) = tmp_path.glob("*/01a2-codex.jsonl")
    route, response = (orjson.loads(line) for line in path.read_text().splitlines())
    assert (route["client"], route["provider"], route["reason"]) == ("openai-responses", "lunaroute:gpt", "marker")
    assert response["usage"] == {"input": 10, "output": 3, "cache_read": 0, "cache_write": 0}


def test_session_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    recorder = SessionRecorder(str(tmp_path))
    path = recorder.path_for("../../etc/passwd")
    assert path.parent.parent == tmp_path and "/" not in path.name
    assert recorder.path_for(None).name == "no-session.jsonl"


def test_recording_is_off_by_default() -> None:
    assert Gateway(config.load(env={})).recorder is None
