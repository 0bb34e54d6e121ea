"""Chat Completions chunks from an Anthropic Messages stream (an OpenAI client, an Anthropic provider).

- `message_start` → the first chunk, ``delta: {"role": "assistant", "content": ""}``.
- text → ``delta.content``; thinking → ``delta.reasoning_content`` (the DeepSeek-style field OpenAI SDKs
  pass through); `tool_use` blocks → ``delta.tool_calls`` with their own `index` (0, 1, … over tool
  blocks only), id/type/name on the first delta and argument fragments after it.
- `message_delta` → the chunk with `finish_reason`; `message_stop` → the usage chunk (``choices: []``)
  only when the client asked for it with `stream_options.include_usage`, then ``data: [DONE]``.
- `ping`, signatures and unknown events are ignored; ``event: error`` → an OpenAI error chunk, no [DONE].
- a stream cut before `message_stop` ends with an OpenAI error chunk (502, server_error): no
  `finish_reason` "stop" and no [DONE] that would make a truncated answer look complete.
- usage `output_tokens_details.thinking_tokens` (when present) → `completion_tokens_details.reasoning_tokens`.
"""

from __future__ import annotations

from typing import Any

from extproc.dialects.anthropic.spec import TYPE_TO_STATUS
from extproc.dialects.openai_chat.chunks import ChatChunkStream
from extproc.dialects.openai_chat.from_anthropic import STOP_TO_FINISH, usage_to_openai
from extproc.dialects.tools import RESPONSE_TOOL


class ChatFromAnthropicStream(ChatChunkStream):
    """Anthropic events in, Chat chunks out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tool_of_block: dict[int, int] = {}  # Anthropic block index → OpenAI tool_calls index
        self._usage: dict = {}  # the Anthropic usage so far (message_start's, updated by message_delta)
        self._finish: str | None = None
        self._answer_block: int | None = None  # the block of the forced tool carrying a structured answer
        self._finish_sent = False

    def on_event(self, kind: Any, doc: dict) -> None:
        if kind == "message_start":
            self._start(doc.get("message") or {})
        elif kind == "content_block_start":
            self._block_start(doc)
        elif kind == "content_block_delta":
            self._block_delta(doc)
        elif kind == "message_delta":
            self._add_usage(doc.get("usage"))
            reason = (doc.get("delta") or {}).get("stop_reason")
            self._finish = STOP_TO_FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
            if self._answer_block is not None and not self._tool_of_block:  # only the structured answer's tool
                self._finish = "stop"
            self._send_finish()
        elif kind == "message_stop":
            self._send_finish()
            self.finish(self.final_usage())
        elif kind == "error":
            self._error(doc.get("error") or {})

    def final_usage(self) -> dict:
        return usage_to_openai(self._usage)

    def usage_so_far(self) -> object:
        return self.final_usage() if self._usage else None

    def _start(self, message: dict) -> None:
        if not isinstance(message, dict):
            return
        self.started = True
        self.chunk_id = f"chatcmpl-{message.get('id') or 'stream'}"
        self.model = message.get("model")
        self._add_usage(message.get("usage"))
        self.chunk({"role": "assistant", "content": ""})

    def _add_usage(self, usage: object) -> None:
        if isinstance(usage, dict):
            self._usage.update(usage)

    def _block_start(self, event: dict) -> None:
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use" and block.get("name") == RESPONSE_TOOL:
            self._answer_block = event.get("index", -1)  # the structured answer: streamed as content
        elif kind == "tool_use":
            index = len(self._tool_of_block)
            self._tool_of_block[event.get("index", -1)] = index
            call = {"index": index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}
            self.chunk({"tool_calls": [call]})
        elif kind == "text" and block.get("text"):
            self.chunk({"content": block["text"]})
        elif kind == "thinking" and block.get("thinking"):
            self.chunk({"reasoning_content": block["thinking"]})

    def _block_delta(self, event: dict) -> None:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            self.chunk({"content": delta["text"]})
        elif kind == "thinking_delta" and delta.get("thinking"):
            self.chunk({"reasoning_content": delta["thinking"]})
        elif kind == "input_json_delta" and delta.get("partial_json") and event.get("index", -1) == self._answer_block:
            self.chunk({"content": delta["partial_json"]})
        elif kind == "input_json_delta" and delta.get("partial_json"):
            index = self._tool_of_block.get(event.get("index", -1))
            if index is not None:
                call = {"index": index, "function": {"arguments": delta["partial_json"]}}
                self.chunk({"tool_calls": [call]})

    def _send_finish(self) -> None:
        if not self._finish_sent:
            self._finish_sent = True
            self.chunk({}, self._finish or ("tool_calls" if self._tool_of_block else "stop"))

    def _error(self, error: object) -> None:
        error = error if isinstance(error, dict) else {"message": error if isinstance(error, str) else None}
        kind = error.get("type")
        status = TYPE_TO_STATUS.get(kind, 500) if isinstance(kind, str) else 500
        self.fail(503 if status == 529 else status, str(error.get("message") or "provider stream error"))
