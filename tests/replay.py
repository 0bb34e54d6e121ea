"""Conversations replayed turn by turn, as their clients build them, for the prompt-caching tests.

`ClaudeCodeSession` grows the recorded Claude Code first turn (`fixtures/claude_code`) the way Claude
Code does: the whole history every request, a new billing-header block each time, `cache_control` only
on the last block, tool results answered with `tool_result` blocks, `<system-reminder>` text attached to
some prompts. `ChatConversation` is an OpenAI-SDK app's conversation with a long system prompt and tools.
"""

from __future__ import annotations

import copy
import json

from tests.conftest import FIXTURES

RECORDED = json.loads((FIXTURES / "claude_code" / "recorded_first_turn.json").read_text())
SESSION_ID = RECORDED["headers"]["x-claude-code-session-id"]
FILE_TEXT = "1\tthe secret word is pumpkin\n2\t"
PROMPTS = [
    "what does the notes file say?",
    "<system-reminder>\nThe user opened the file /home/user/project/notes.txt in the IDE.\n</system-reminder>",
    "rewrite it as a haiku",
    "now translate the haiku to French",
    "which word did you keep in English?",
    "add a title",
    "make it shorter",
    "thanks, that is all for today",
    "bye",
]


class ClaudeCodeSession:
    def __init__(self, model: str | None = None) -> None:
        self.base = copy.deepcopy(RECORDED["body"])
        if model:
            self.base["model"] = model
        self.messages = copy.deepcopy(self.base["messages"])
        self.headers = {k: v for k, v in RECORDED["headers"].items() if k != "accept-encoding"}
        self.sent = 0
        self._prompts = iter(PROMPTS)

    def request(self) -> dict:
        """The next request's body: the history so far, breakpoint on its last block, a fresh billing header."""
        self.sent += 1
        body = copy.deepcopy(self.base)
        body["system"][0]["text"] = ("x-anthropic-billing-header: cc_version=2.1.197.7ab; cc_entrypoint=sdk-cli; "
                                     f"cch={self.sent:05x};")
        messages = copy.deepcopy(self.messages)
        for message in messages:
            for block in message["content"]:
                block.pop("cache_control", None)
        messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
        body["messages"] = messages
        return body

    def answered(self, content: list[dict], prompt: str | None = None) -> None:
        """The assistant's answer joins the history, then the tool's result or the user's next prompt."""
        self.messages.append({"role": "assistant", "content": content})
        calls = [b for b in content if b["type"] == "tool_use"]
        if calls:
            self.messages.append({"role": "user", "content": [
                {"tool_use_id": c["id"], "type": "tool_result", "content": FILE_TEXT} for c in calls]})
            return
        text = prompt or next(self._prompts)
        blocks = [{"type": "text", "text": text}]
        if text.startswith("<system-reminder>"):
            blocks.append({"type": "text", "text": "continue"})
        self.messages.append({"role": "user", "content": blocks})


SYSTEM = "You are the support assistant of a bookshop. " + " ".join(
    f"Policy {i}: answer from the catalogue, name the shelf, and never promise a delivery date." for i in range(1, 81))
TOOLS = [{"type": "function", "function": {"name": "find_book", "description": "Search the catalogue",
                                           "parameters": {"type": "object", "properties": {"title": {"type": "string"}},
                                                          "required": ["title"]}}}]
QUESTIONS = ["Do you have Dune?", "Which shelf?", "Is there a sequel?", "Paperback or hardcover?", "How much is it?",
             "Any other Herbert books?", "Recommend something similar.", "Is it in stock today?",
             "Can I reserve it?", "Thanks!"]
