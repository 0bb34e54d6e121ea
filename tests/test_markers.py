"""Behaviour spec for `[LUNAROUTE:name]` markers: which message counts, what wins, what is stripped."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.markers import EMPTY_PROMPT, PREFIX, Marker, markers, take_marker

FIXTURES = Path(__file__).parent / "fixtures" / "markers"
PROVIDERS = {"anthropic", "gpt", "kimi"}


def user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def text(t: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": t, **extra}


def tool_result(content: Any, tool_use_id: str = "toolu_01") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}


def assistant(t: str = "ok") -> dict[str, Any]:
    return {"role": "assistant", "content": [text(t)]}


def take(messages: list[dict[str, Any]], dialect: str = "anthropic") -> tuple[Marker, bool, dict[str, Any]]:
    body = {"model": "m", "messages": messages}
    marker, changed = take_marker(body, dialect, PROVIDERS)  # type: ignore[arg-type]
    return marker, changed, body


# -- the recorded Claude Code-shaped fixtures --------------------------------------------------------


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_fixture_finds_the_prompts_marker_and_strips_markers_only_from_user_texts(path: Path) -> None:
    case = json.loads(path.read_text())
    body = case["body"]
    before = copy.deepcopy(body)
    expected = case["expected"]

    marker, changed = take_marker(body, case["dialect"], PROVIDERS)

    assert marker == Marker(expected["marker"]["kind"], expected["marker"]["name"])
    assert changed is expected["changed"]
    i = expected["prompt_index"]
    assert body["messages"][i]["content"] == expected["prompt_content_after"]
    for j, (was, now) in enumerate(zip(before["messages"], body["messages"], strict=True)):
        if j == i:
            continue
        if was.get("role") == "user" and any(PREFIX in t for t in _user_texts(was)):
            assert not any(PREFIX in t for t in _user_texts(now))  # an old marker: stripped, not counted
        else:
            assert now == was
    assert {k: v for k, v in body.items() if k != "messages"} == {
        k: v for k, v in before.items() if k != "messages"
    }
    if not changed:
        assert body == before


def test_every_request_of_a_turn_strips_the_marker_again() -> None:
    case = json.loads((FIXTURES / "cc_tool_loop_followup.json").read_text())
    for _ in range(3):  # Claude Code resends the unstripped conversation on every follow-up
        body = copy.deepcopy(case["body"])
        marker, changed = take_marker(body, "anthropic", PROVIDERS)
        assert (marker, changed) == (Marker("provider", "gpt"), True)
        assert PREFIX not in json.dumps(body["messages"][0])


# -- which message counts -----------------------------------------------------------------------------


def test_old_marker_in_an_earlier_prompt_is_ignored_but_stripped() -> None:
    messages = [user(text("[LUNAROUTE:gpt] first")), assistant(), user(text("second"))]
    marker, changed, body = take(messages)
    # routing ignores it; the provider sees the history it saw when that turn was sent (prompt cache)
    assert (marker, changed) == (Marker("none"), True)
    assert body["messages"][0]["content"] == [text("first")]


def test_conversation_without_any_marker_is_untouched() -> None:
    messages = [user(text("first")), assistant(), user(text("second"))]
    marker, changed, body = take(messages)
    assert (marker, changed) == (Marker("none"), False)
    assert body["messages"] == messages


def test_last_prompt_wins_over_an_earlier_marker() -> None:
    messages = [user(text("[LUNAROUTE:gpt] first")), assistant(), user(text("[LUNAROUTE:kimi] second"))]
    marker, _, body = take(messages)
    assert marker == Marker("provider", "kimi")
    assert body["messages"][0]["content"] == [text("first")]
    assert body["messages"][2]["content"] == [text("second")]


def test_tool_result_only_follow_up_keeps_the_turns_marker() -> None:
    messages = [
        user(text("[LUNAROUTE:gpt] run the tests")),
        assistant(),
        user(tool_result("3 passed")),
        assistant(),
        user(tool_result([text("1 failed")], "toolu_02")),
    ]
    marker, changed, body = take(messages)
    assert (marker, changed) == (Marker("provider", "gpt"), True)
    assert body["messages"][0]["content"] == [text("run the tests")]


def test_marker_like_text_inside_tool_results_is_ignored() -> None:
    messages = [
        user(text("run the tests")),
        assistant(),
        user(tool_result("see [LUNAROUTE:gpt]"), tool_result([text("[LUNAROUTE:kimi]")], "toolu_02")),
    ]
    marker, changed, body = take(messages)
    assert (marker, changed) == (Marker("none"), False)
    assert body["messages"][2]["content"][0]["content"] == "see [LUNAROUTE:gpt]"


def test_tool_result_message_with_a_marker_in_its_own_text_counts() -> None:
    messages = [
        user(text("[LUNAROUTE:gpt] run the tests")),
        assistant(),
        user(tool_result("ok"), text("[LUNAROUTE:kimi] and now use kimi")),
    ]
    marker, _, body = take(messages)
    assert marker == Marker("provider", "kimi")
    assert body["messages"][2]["content"] == [tool_result("ok"), text("and now use kimi")]


def test_system_entry_after_the_prompt_does_not_count() -> None:
    messages = [
        user(text("[LUNAROUTE:gpt] hello")),
        {"role": "system", "content": "[LUNAROUTE:kimi] reminder from the harness"},
    ]
    marker, _, body = take(messages)
    assert marker == Marker("provider", "gpt")
    assert body["messages"][1]["content"] == "[LUNAROUTE:kimi] reminder from the harness"


def test_user_message_without_text_is_skipped() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
    messages = [user(text("[LUNAROUTE:gpt] look")), assistant(), user(image)]
    marker, _, _ = take(messages)
    assert marker == Marker("provider", "gpt")


def test_no_messages_means_no_marker() -> None:
    body: dict[str, Any] = {"model": "m"}
    assert take_marker(body, "anthropic", PROVIDERS) == (Marker("none"), False)


# -- blocks, strings and reminders --------------------------------------------------------------------


def test_string_content_marker_is_removed_with_one_space() -> None:
    _, changed, body = take([{"role": "user", "content": "please [LUNAROUTE:gpt] explain"}])
    assert changed
    assert body["messages"][0]["content"] == "please explain"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("[LUNAROUTE:gpt] explain", "explain"),
        ("explain [LUNAROUTE:gpt]", "explain"),
        ("explain\n[LUNAROUTE:gpt]\nmore", "explain\n\nmore"),
        ("a[LUNAROUTE:gpt]b", "ab"),
    ],
)
def test_plain_marker_removal_tidies_one_adjacent_space(before: str, after: str) -> None:
    _, _, body = take([user(text(before))])
    assert body["messages"][0]["content"] == [text(after)]


def test_marker_in_a_system_reminder_block_removes_the_whole_block() -> None:
    hook = "<system-reminder>\nUserPromptSubmit hook additional context: [LUNAROUTE:gpt]\n</system-reminder>"
    _, _, body = take([user(text("<system-reminder>ctx</system-reminder>"), text(hook), text("explain"))])
    assert body["messages"][0]["content"] == [text("<system-reminder>ctx</system-reminder>"), text("explain")]


def test_system_reminder_in_the_same_text_as_the_prompt_is_cut_out_with_its_whitespace() -> None:
    prompt = "<system-reminder>[LUNAROUTE:gpt]</system-reminder>\n\nexplain this"
    _, _, body = take([user(text(prompt))])
    assert body["messages"][0]["content"] == [text("explain this")]
    prompt = "explain this\n\n<system-reminder>[LUNAROUTE:gpt]</system-reminder>\n"
    _, _, body = take([user(text(prompt))])
    assert body["messages"][0]["content"] == [text("explain this")]


def test_reminders_without_a_marker_stay() -> None:
    keep = "<system-reminder>keep me</system-reminder>\n"
    prompt = keep + "<system-reminder>[LUNAROUTE:gpt]</system-reminder>\nhi"
    _, _, body = take([user(text(prompt))])
    assert body["messages"][0]["content"] == [text(keep + "hi")]


def test_block_left_blank_is_removed_and_its_cache_breakpoint_moves_back() -> None:
    eph = {"type": "ephemeral"}
    _, _, body = take([user(text("explain"), text("[LUNAROUTE:gpt]\n", cache_control=eph))])
    assert body["messages"][0]["content"] == [text("explain", cache_control=eph)]


def test_message_holding_only_the_marker_keeps_a_placeholder_text() -> None:
    _, _, body = take([user(text("[LUNAROUTE:gpt]"))])
    assert body["messages"][0]["content"] == [text(EMPTY_PROMPT)]
    _, _, body = take([{"role": "user", "content": "  [LUNAROUTE:gpt]  "}])
    assert body["messages"][0]["content"] == EMPTY_PROMPT


def test_blocks_other_than_text_are_kept_as_they_are() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    _, _, body = take([user(image, text("[LUNAROUTE:gpt]"))])
    assert body["messages"][0]["content"] == [image]


# -- what the marker means ------------------------------------------------------------------------------


def test_clear_marker() -> None:
    marker, changed, body = take([user(text("[LUNAROUTE:clear] hi"))])
    assert (marker, changed) == (Marker("clear"), True)
    assert body["messages"][0]["content"] == [text("hi")]


def test_unknown_name_is_reported_and_still_stripped() -> None:
    marker, changed, body = take([user(text("[LUNAROUTE:nope] hi"))])
    assert (marker, changed) == (Marker("unknown", "nope"), True)
    assert body["messages"][0]["content"] == [text("hi")]


def test_name_is_case_insensitive_but_the_prefix_is_exact() -> None:
    assert take([user(text("[LUNAROUTE:GPT] hi"))])[0] == Marker("provider", "gpt")
    assert take([user(text("[lunaroute:gpt] hi"))])[:2] == (Marker("none"), False)
    assert take([user(text("[LUNAROUTE: gpt] hi"))])[:2] == (Marker("none"), False)


def test_several_markers_last_one_wins_and_all_are_stripped() -> None:
    hook = "<system-reminder>[LUNAROUTE:gpt]</system-reminder>"
    marker, _, body = take([user(text(hook), text("use [LUNAROUTE:clear] no, [LUNAROUTE:kimi] please"))])
    assert marker == Marker("provider", "kimi")
    assert body["messages"][0]["content"] == [text("use no, please")]


# -- OpenAI dialect ---------------------------------------------------------------------------------------


def test_openai_string_prompt_and_tool_role_does_not_count() -> None:
    messages = [
        {"role": "system", "content": "[LUNAROUTE:kimi]"},
        {"role": "user", "content": "[LUNAROUTE:gpt] hi"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "c1", "content": "[LUNAROUTE:kimi]"},
    ]
    marker, _, body = take(messages, "openai")
    assert marker == Marker("provider", "gpt")
    assert body["messages"][1]["content"] == "hi"
    assert body["messages"][3]["content"] == "[LUNAROUTE:kimi]"


def test_openai_developer_message_after_the_prompt_does_not_count() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "developer", "content": "[LUNAROUTE:gpt]"}]
    assert take(messages, "openai")[:2] == (Marker("none"), False)


# -- OpenAI Responses dialect -------------------------------------------------------------------------------


def input_text(t: str) -> dict[str, Any]:
    return {"type": "input_text", "text": t}


def test_responses_last_user_input_item_with_text_is_the_prompt() -> None:
    items = [
        {"type": "message", "role": "developer", "content": [input_text("[LUNAROUTE:kimi] rules")]},
        {"type": "message", "role": "user", "content": [input_text("<env/>"), input_text("[LUNAROUTE:gpt] fix it")]},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "[LUNAROUTE:kimi]"},
    ]
    body = {"model": "m", "input": items}
    marker, changed = take_marker(body, "openai-responses", PROVIDERS)
    assert (marker, changed) == (Marker("provider", "gpt"), True)
    assert body["input"][1]["content"] == [input_text("<env/>"), input_text("fix it")]
    assert body["input"][0]["content"] == [input_text("[LUNAROUTE:kimi] rules")]  # developer text never counts
    assert body["input"][3]["output"] == "[LUNAROUTE:kimi]"  # nor tool output


def test_responses_string_input_is_the_prompt() -> None:
    body = {"model": "m", "input": "[LUNAROUTE:kimi] hello"}
    assert take_marker(body, "openai-responses", PROVIDERS) == (Marker("provider", "kimi"), True)
    assert body["input"] == "hello"
    untouched = {"model": "m", "input": "hello"}
    assert take_marker(untouched, "openai-responses", PROVIDERS) == (Marker("none"), False)


def test_responses_old_markers_in_history_are_stripped_too() -> None:
    body = {"model": "m", "input": [{"role": "user", "content": "[LUNAROUTE:gpt] first"},
                                    {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
                                    {"role": "user", "content": "second"}]}
    assert take_marker(body, "openai-responses", PROVIDERS) == (Marker("none"), True)
    assert body["input"][0]["content"] == "first"


# -- untouched bodies --------------------------------------------------------------------------------------


def test_body_without_marker_is_not_touched() -> None:
    messages = [user(text("<system-reminder>ctx</system-reminder>"), text("hello [LUNAROUTE: not one]"))]
    before = copy.deepcopy(messages)
    marker, changed, body = take(messages)
    assert (marker, changed) == (Marker("none"), False)
    assert body["messages"] == before


# -- properties ----------------------------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,10}", fullmatch=True)
no_brackets = st.text(st.characters(blacklist_characters="["), max_size=40)
any_text = st.text(max_size=40)


@st.composite
def prompt_with_markers(draw: st.DrawFn, filler: st.SearchStrategy[str]) -> str:
    pieces = draw(st.lists(filler, min_size=1, max_size=4))
    for _ in range(draw(st.integers(1, 3))):
        marker = f"[LUNAROUTE:{draw(names)}]"
        if draw(st.booleans()):
            marker = f"<system-reminder>{draw(filler)}{marker}{draw(filler)}</system-reminder>"
        pieces.insert(draw(st.integers(0, len(pieces))), marker)
    return "".join(pieces)


def _conversation(prompt_blocks: list[str], other: str) -> list[dict[str, Any]]:
    return [
        user(text(other)),
        assistant(other),
        user(*(text(b) for b in prompt_blocks)),
        {"role": "system", "content": other},
        assistant(other),
        user(tool_result(other)),
    ]


def _others(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Everything but the prompt and the earlier user text (which may carry an old marker)."""
    return [m for i, m in enumerate(messages) if i not in (0, 2)]


def _user_texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    return [b["text"] for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]


@given(st.lists(prompt_with_markers(no_brackets), min_size=1, max_size=3), prompt_with_markers(no_brackets))
def test_property_stripping_removes_every_marker_prefix_and_nothing_elsewhere(
    blocks: list[str], other: str
) -> None:
    messages = _conversation(blocks, other)
    before = copy.deepcopy(messages)
    marker, changed, body = take(messages)
    assert changed and marker.kind != "none"
    assert PREFIX not in json.dumps(body["messages"][2], ensure_ascii=False)
    assert _others(body["messages"]) == _others(before)


@given(st.lists(any_text, min_size=1, max_size=3), any_text)
def test_property_any_text_leaves_no_marker_and_a_second_pass_changes_nothing(
    blocks: list[str], other: str
) -> None:
    messages = _conversation(blocks, other)
    before = copy.deepcopy(messages)
    _, _, body = take(messages)
    prompt = body["messages"][2]["content"]
    assert prompt and all(not markers(b["text"]) for b in prompt)  # quoted ones are text
    assert _others(body["messages"]) == _others(before)
    assert take(body["messages"])[:2] == (Marker("none"), False)


# -- exactly the pattern: mentions, unclosed reminders, quoted markers ---------------------------------------


def test_a_tool_loop_followup_that_merely_mentions_the_syntax_does_not_steal_the_turn() -> None:
    messages = [user(text("[LUNAROUTE:gpt] fix it")), {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {}}]},
        user(tool_result("docs"), text("<system-reminder>markers look like [LUNAROUTE: name]</system-reminder>"))]
    marker, changed, body = take(messages)
    assert marker == Marker("provider", "gpt") and changed
    assert body["messages"][0]["content"] == [text("fix it")]
    assert body["messages"][2] == messages[2]


def test_an_unclosed_reminder_earlier_in_the_text_keeps_the_users_text() -> None:
    prompt = "<system-reminder>ctx A\n\nuser text <system-reminder>[LUNAROUTE:gpt]</system-reminder> tail"
    marker, _, body = take([user(text(prompt))])
    assert marker == Marker("provider", "gpt")
    assert body["messages"][0]["content"] == [text("<system-reminder>ctx A\n\nuser text tail")]


@pytest.mark.parametrize("quoted", [
    "write `[LUNAROUTE:gpt]` in the README",
    "example:\n```\n[LUNAROUTE:gpt] refactor this\n```\nthanks",
    "a span with ``[LUNAROUTE:kimi]`` and double backticks",
])
def test_a_marker_quoted_as_code_is_text_it_neither_routes_nor_is_stripped(quoted: str) -> None:
    marker, changed, body = take([user(text(quoted))])
    assert marker == Marker("none") and not changed
    assert body["messages"][0]["content"] == [text(quoted)]


def test_a_real_marker_beside_a_quoted_one_routes_and_only_it_is_stripped() -> None:
    marker, _, body = take([user(text("[LUNAROUTE:kimi] explain `[LUNAROUTE:gpt]`"))])
    assert marker == Marker("provider", "kimi")
    assert body["messages"][0]["content"] == [text("explain `[LUNAROUTE:gpt]`")]


def test_a_new_prompt_beside_tool_results_is_the_turns_prompt_and_an_old_marker_does_not_route_it() -> None:
    """Claude Code's --continue sends the next prompt in the same message as the last tool results."""
    messages = [user(text("[LUNAROUTE:gpt] read it")),
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {}}]},
                user(tool_result("data"), text("<system-reminder>todo</system-reminder>"), text("thanks"))]
    marker, changed, body = take(messages)
    assert marker == Marker("none") and changed  # the old marker is stripped from the history, not obeyed
    assert body["messages"][0]["content"] == [text("read it")]
