"""One rule for the client's session (`extproc.session_id`): what prompt caching keys on is what budgets
and records name."""

from __future__ import annotations

import orjson
import pytest

from extproc.dialects import caching
from extproc.session_id import session_id

CLAUDE_CODE_META = {"metadata": {"user_id": orjson.dumps({"device_id": "d", "session_id": "from-meta"}).decode()}}


def test_claude_codes_header_wins_then_its_metadata_then_session_headers_then_the_prompt_cache_key() -> None:
    both = {"x-claude-code-session-id": "cc-1", "x-session-id": "x"}
    assert session_id(both, {**CLAUDE_CODE_META, "prompt_cache_key": "k"}) == "cc-1"
    assert session_id({"x-session-id": "x"}, CLAUDE_CODE_META) == "from-meta"
    assert session_id({"x-session-id": "x", "session-id": "codex"}, {}) == "x"
    assert session_id({"session-id": "codex", "session_id": "other"}, {}) == "codex"
    assert session_id({"session_id": "codex-underscore"}, {}) == "codex-underscore"
    assert session_id({}, {"prompt_cache_key": "conversation-7"}) == "conversation-7"
    assert session_id({"session-id": "codex"}, {"prompt_cache_key": "conversation-7"}) == "codex"


def test_older_claude_code_user_ids_carry_the_session_as_a_suffix() -> None:
    user = "user_abc_account__session_0f0e0d0c-1111-2222-3333-444455556666"
    assert session_id({}, {"metadata": {"user_id": user}}) == "0f0e0d0c-1111-2222-3333-444455556666"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a" * 129, "has space", "", "-leading-dash"])
def test_values_that_are_not_plain_ids_are_ignored_not_cleaned(bad: str) -> None:
    assert session_id({"x-claude-code-session-id": bad, "session-id": bad}, {"prompt_cache_key": bad}) is None
    meta = {"metadata": {"user_id": orjson.dumps({"session_id": bad}).decode()}}
    assert session_id({"x-session-id": "fine"}, meta) == "fine"


def test_no_session_is_none_and_a_request_id_is_not_a_session() -> None:
    assert session_id({"x-request-id": "req-9"}, {}) is None
    assert session_id({}, None) is None
    assert session_id({}, {"metadata": {"user_id": "{not json"}}) is None
    assert session_id({}, {"metadata": "not an object", "prompt_cache_key": 7}) is None


def test_prompt_caching_keys_on_the_same_session_else_on_the_user() -> None:
    for headers, body in (({"x-claude-code-session-id": "h-1"}, CLAUDE_CODE_META), ({"session_id": "c"}, {}),
                          ({}, CLAUDE_CODE_META), ({}, {"prompt_cache_key": "k-1"})):
        assert caching.conversation_of(headers, body) == session_id(headers, body)
    assert caching.conversation_of({}, {"metadata": {"user_id": "alice"}}) == "alice"
