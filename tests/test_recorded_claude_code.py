"""Real Claude Code requests (recorded through the gateway, scrubbed) through the pure pipeline parts."""

from __future__ import annotations

import json

import orjson
import pytest

from extproc.dialects import translator_for
from extproc.dialects.anthropic import count_tokens_estimate
from extproc.dialects.base import Target
from extproc.markers import take_marker
from tests.conftest import FIXTURES

RECORDED = ["recorded_first_turn", "recorded_tool_followup"]
GPT = Target(name="gpt", dialect="openai")


def _load(name: str) -> dict:
    return json.loads((FIXTURES / "claude_code" / f"{name}.json").read_text())


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_request_translates_for_an_openai_provider(name: str) -> None:
    body = _load(name)["body"]
    out = translator_for("anthropic", "openai").request_body(body, GPT)
    text = orjson.dumps(out).decode()
    assert "x-anthropic-billing-header" not in text  # changes every request: would defeat prompt caching
    assert "cache_control" not in text and "context_management" not in out and "thinking" not in out
    assert out["messages"][0]["role"] == "system"
    assert len(out["tools"]) == len(body["tools"])
    assert all("strict" not in t["function"] for t in out["tools"])


def test_recorded_tool_followup_becomes_a_tool_message_after_the_call() -> None:
    body = _load("recorded_tool_followup")["body"]
    out = translator_for("anthropic", "openai").request_body(body, GPT)
    assistant = next(m for m in out["messages"] if m["role"] == "assistant")
    call_id = assistant["tool_calls"][0]["id"]
    tool = out["messages"][out["messages"].index(assistant) + 1]
    assert tool["role"] == "tool" and tool["tool_call_id"] == call_id
    assert "pumpkin" in tool["content"]


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_request_without_marker_is_left_untouched(name: str) -> None:
    body = _load(name)["body"]
    before = orjson.dumps(body)
    marker, changed = take_marker(body, "anthropic", {"anthropic", "gpt"})
    assert marker.kind == "none" and not changed
    assert orjson.dumps(body) == before


@pytest.mark.parametrize("name", RECORDED)
def test_count_tokens_estimate_of_a_real_request_is_in_a_sane_range(name: str) -> None:
    tokens = count_tokens_estimate(_load(name)["body"])
    assert 10_000 < tokens < 60_000  # ~115 KB of JSON
