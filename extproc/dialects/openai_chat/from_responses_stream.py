"""Chat Completions chunks from a Responses API stream (a Chat client, or composed, an Anthropic one; a
provider that speaks only Responses).

Text and refusal deltas → ``delta.content``; reasoning summary and text deltas → ``delta.reasoning_content``;
each `function_call` item → one ``delta.tool_calls`` entry (id and name when the item is added, arguments
as their deltas come, or whole at `output_item.done` when none came); `response.completed` /
`response.incomplete` → the finish chunk, the usage chunk when asked for, ``[DONE]``; `response.failed`
and ``error`` → an OpenAI error chunk.
"""

from __future__ import annotations

from typing import Any

from extproc.dialects.body_checks import is_int
from extproc.dialects.openai_chat.chunks import ChatChunkStream
from extproc.dialects.openai_chat.from_responses import finish_reason, usage_to_chat
from extproc.dialects.usage import dict_of


class ChatFromResponsesStream(ChatChunkStream):
    """Responses events in, Chat chunks out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._calls: dict[object, int] = {}  # output_index → Chat tool_calls index
        self._streamed: set[object] = set()  # output indexes whose arguments came as deltas
        self._usage: object = None  # the Responses usage, once the final event brought it

    def final_usage(self) -> dict:
        return usage_to_chat(self._usage)

    def on_event(self, kind: Any, data: dict) -> None:
        if kind == "response.created":
            response = dict_of(data.get("response"))
            self.started = True
            self.chunk_id = f"chatcmpl-{response.get('id') or 'stream'}"
            self.model = response.get("model")
            if is_int(response.get("created_at")):
                self.created = response["created_at"]
            self.chunk({"role": "assistant", "content": ""})
        elif kind in ("response.output_text.delta", "response.refusal.delta") and data.get("delta"):
            self.chunk({"content": data["delta"]})
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta") and data.get("delta"):
            self.chunk({"reasoning_content": data["delta"]})
        elif kind == "response.output_item.added":
            item = dict_of(data.get("item"))
            if item.get("type") == "function_call":
                index = self._calls[data.get("output_index")] = len(self._calls)
                call = {"index": index, "id": item.get("call_id"), "type": "function",
                        "function": {"name": item.get("name"), "arguments": ""}}
                self.chunk({"tool_calls": [call]})
        elif kind == "response.function_call_arguments.delta" and data.get("delta"):
            index = self._calls.get(data.get("output_index"))
            if index is not None:
                self._streamed.add(data["output_index"])
                self.chunk({"tool_calls": [{"index": index, "function": {"arguments": data["delta"]}}]})
        elif kind == "response.output_item.done":
            item = dict_of(data.get("item"))
            index = self._calls.get(data.get("output_index"))
            if index is not None and data.get("output_index") not in self._streamed and item.get("arguments"):
                self.chunk({"tool_calls": [{"index": index, "function": {"arguments": item["arguments"]}}]})
        elif kind in ("response.completed", "response.incomplete"):
            response = dict_of(data.get("response"))
            self._usage = response.get("usage")
            self.chunk({}, finish_reason(response, bool(self._calls)))
            self.finish(self.final_usage())
        elif kind in ("response.failed", "error"):
            error = dict_of(dict_of(data.get("response")).get("error")) if kind == "response.failed" else data
            error = dict_of(error.get("error")) or error
            self._usage = dict_of(data.get("response")).get("usage")
            self.fail(500, str(error.get("message") or "provider stream error"),
                      error.get("code") if isinstance(error.get("code"), str) else None)
