"""Anthropic Messages stream events from a Chat Completions stream (an Anthropic client, a Chat provider).

Anthropic content blocks cannot interleave, OpenAI deltas can. The policy:
- thinking (`reasoning_content`), text and tool calls each go to their own block; the open block is
  always closed (`content_block_stop`) before the next one opens.
- the **first** tool call streams live: `content_block_start` as soon as its name is known, then each
  argument fragment as an `input_json_delta`. Every other tool call (parallel calls, possibly
  interleaved by `index`, with no id after their first delta) is buffered and emitted complete, in index
  order, after the live one closes: start, one `input_json_delta` with the whole arguments, stop.
  A tool block whose provider sent no arguments gets ``{}`` as its delta, because Claude Code builds
  `tool_use.input` only from `input_json_delta`.
- text or thinking arriving after tool calls started is kept and emitted after the tool blocks.
- `message_delta` (stop reason + usage) waits until both the finish reason and the usage are known, or
  until `[DONE]` / end of stream: providers send the usage chunk *after* the finish chunk. A provider
  that reports usage on every chunk (vLLM continuous usage stats, some OpenRouter models) may still send
  more after the finish chunk, so once usage came before the finish, only `[DONE]` / end of stream
  finalizes, with the last usage seen.
- a stream that ends (connection closed) with neither a `finish_reason` nor `[DONE]` was cut off: it
  ends with an Anthropic ``event: error`` (api_error), never with a normal `message_stop` that would
  make a half-streamed tool call look complete.
- tool arguments that are not a whole JSON object at the end: a buffered tool call gets
  ``{"raw_arguments": "<text>"}`` (as in non-streaming responses, so the client's schema check reports
  it to the model); the live one has already been streamed, so the stream ends with ``event: error``
  unless the provider stopped for length (`max_tokens`, which Anthropic streams the same way).
- `message_start.usage.input_tokens` comes from the provider when its first chunk has usage, otherwise
  from `input_tokens_estimate` (at least 1: zeros there break Claude Code).
- a chunk holding ``{"error": …}`` becomes an Anthropic ``event: error``; nothing follows it.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.dialects.anthropic.from_chat import stop_reason, usage_to_anthropic
from extproc.dialects.anthropic.history import generated_tool_id
from extproc.dialects.anthropic.spec import stream_error_event, usage
from extproc.dialects.openai_chat.read import ToolCallSlots, reasoning_of
from extproc.dialects.stream import StreamTranslator
from extproc.dialects.tools import client_name, complete_object
from extproc.sse import encode_json

_BAD_ARGUMENTS = "the provider's stream ended with tool call arguments that are not a complete JSON object"


class _Tool:
    __slots__ = ("id", "name", "args", "sent")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.args: list[str] = []  # fragments not emitted yet
        self.sent: list[str] = []  # fragments already emitted (the live tool)


class AnthropicFromChatStream(StreamTranslator):
    """Chat chunks in, Anthropic events out."""

    read_usage = staticmethod(usage)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reasoning = self.target.reasoning if self.target else "thinking"
        self._estimate = max(self.input_tokens_estimate, 1)
        self._index = 0  # index of the next Anthropic content block
        self._id = ""  # the provider's response id (generated tool ids derive from it)
        self._open: str | None = None  # kind of the open block: thinking | text | reasoning_text | tool
        self._tools: dict[int, _Tool] = {}  # by ToolCallSlots key
        self._slots = ToolCallSlots()
        self._live: int | None = None  # provider index of the tool call streaming live
        self._live_sent = False  # the live tool has had at least one non-empty input_json_delta
        self._after_tools: list[tuple[str, list[str]]] = []
        self._finish: str | None = None
        self._matched: object = None
        self._usage: dict | None = None
        self._usage_early = False  # usage came before the finish chunk: more may follow, wait for [DONE]
        self._chars = 0  # output characters, for an output estimate when the provider sends no usage

    def ended(self) -> None:
        if self._finish:  # finished, only the usage chunk or [DONE] is missing
            self._finalize()
        else:
            super().ended()

    def fail(self, status: int, message: str, code: str | None = None) -> None:
        self.ended_with(self._final_usage())
        self.emit(stream_error_event(status, message))
        self.done = True

    def _emit(self, name: str, payload: dict) -> None:
        self.emit(encode_json(payload, name))

    # ----------------------------------------------------------------------------------- provider events

    def on_done_marker(self) -> None:
        if self.started:
            self._finalize()

    def on_event(self, kind: Any, chunk: dict) -> None:
        error = chunk.get("error")
        if error:
            self._error(error)
            return
        usage = chunk.get("usage")
        if not self.started:
            self._start(chunk, usage)
        if isinstance(usage, dict):
            self._usage = usage
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and not choice.get("index"):
                self._choice(choice)
        if isinstance(usage, dict) and not self._finish:
            self._usage_early = True
        if self._finish and self._usage and not self._usage_early:
            self._finalize()

    def _start(self, chunk: dict, usage: object) -> None:
        self.started = True
        start_usage = usage_to_anthropic(usage)
        if not start_usage["input_tokens"] and not start_usage["cache_read_input_tokens"]:
            start_usage["input_tokens"] = self._estimate
        start_usage["output_tokens"] = 0
        raw_id = str(chunk.get("id") or "stream")
        self._id = str(chunk.get("id") or "")
        message = {
            "id": raw_id if raw_id.startswith("msg_") else f"msg_{raw_id}",
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        self._emit("message_start", {"type": "message_start", "message": message})

    def _error(self, error: object) -> None:
        """The provider's own error chunk: its Anthropic error event, no usage claimed."""
        status, message = 500, "provider stream error"
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            code = error.get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
        elif isinstance(error, str):
            message = error
        self.emit(stream_error_event(status, message))
        self.done = True

    def usage_so_far(self) -> object:
        return usage_to_anthropic(self._usage) if self._usage else None

    def _final_usage(self) -> dict:
        if self._usage:
            return usage_to_anthropic(self._usage)
        return {"input_tokens": self._estimate, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": (self._chars + 3) // 4}

    def _choice(self, choice: dict) -> None:
        delta = choice.get("delta") or {}
        reasoning = reasoning_of(delta)
        if reasoning and self._reasoning != "drop":
            self._text("thinking" if self._reasoning == "thinking" else "reasoning_text", reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._text("text", content)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._tool_delta(call)
        finish = choice.get("finish_reason")
        if finish and isinstance(finish, str):
            self._finish = finish
            self._matched = choice.get("stop_reason")

    # ------------------------------------------------------------------------------------------- blocks

    def _text(self, kind: str, text: str) -> None:
        self._chars += len(text)
        if self._tools:  # blocks cannot interleave: keep it for after the tool blocks
            if not self._after_tools or self._after_tools[-1][0] != kind:
                self._after_tools.append((kind, []))
            self._after_tools[-1][1].append(text)
            return
        if self._open != kind:
            self._open_block(kind)
        self._delta(kind, text)

    def _open_block(self, kind: str, tool: _Tool | None = None) -> None:
        self._close_block()
        if kind == "thinking":
            block: dict = {"type": "thinking", "thinking": ""}
        elif kind == "tool":
            assert tool is not None
            block = {"type": "tool_use", "id": tool.id, "name": client_name(tool.name, self.client_tools),
                     "input": {}}
        else:
            block = {"type": "text", "text": ""}
        self._emit("content_block_start", {"type": "content_block_start", "index": self._index,
                                           "content_block": block})
        self._open = kind

    def _delta(self, kind: str, text: str) -> None:
        if kind == "thinking":
            delta = {"type": "thinking_delta", "thinking": text}
        elif kind == "tool":
            delta = {"type": "input_json_delta", "partial_json": text}
        else:
            delta = {"type": "text_delta", "text": text}
        self._emit("content_block_delta",
                   {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _close_block(self) -> None:
        if self._open is None:
            return
        if self._open == "tool" and not self._live_sent:
            self._delta("tool", "{}")
        self._emit("content_block_stop", {"type": "content_block_stop", "index": self._index})
        self._index += 1
        self._open = None

    def _tool_delta(self, call: dict) -> None:
        index = call.get("index")
        index = self._slots.key(index if isinstance(index, int) else len(self._tools), call.get("id"))
        tool = self._tools.get(index)
        function = call.get("function") or {}
        if not isinstance(function, dict):
            return
        if tool is None:
            tool = self._tools[index] = _Tool()
            call_id = call.get("id")
            tool.id = call_id if isinstance(call_id, str) and call_id else generated_tool_id(self._id, index)
        name = function.get("name")
        if name and isinstance(name, str) and not tool.name:
            tool.name = name
        args = function.get("arguments")
        if isinstance(args, str) and args:
            self._chars += len(args)
            tool.args.append(args)
        if self._live is None and tool.name and len(self._tools) == 1:
            self._live = index
            self._open_block("tool", tool)
        if self._live == index and tool.args:
            text = "".join(tool.args)
            tool.sent.append(text)
            tool.args = []
            self._live_sent = True
            self._delta("tool", text)

    def _finalize(self) -> None:
        reason, sequence = stop_reason(self._finish, self._matched, bool(self._tools))
        live = self._tools.get(self._live) if self._live is not None else None
        if live and reason != "max_tokens" and not complete_object("".join(live.sent)):
            self.fail(502, _BAD_ARGUMENTS)  # already streamed: it cannot be repaired, only refused
            return
        self._close_block()
        for index in sorted(self._tools):
            tool = self._tools[index]
            if index == self._live:
                continue
            self._live_sent = False
            self._open_block("tool", tool)
            args = "".join(tool.args)
            if args and reason != "max_tokens" and not complete_object(args):
                args = orjson.dumps({"raw_arguments": args}).decode()
            if args:
                self._live_sent = True
                self._delta("tool", args)
            self._close_block()
        for kind, parts in self._after_tools:
            self._open_block(kind)
            self._delta(kind, "".join(parts))
            self._close_block()
        usage = self._final_usage()
        self.ended_with(usage)
        self._emit("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": reason, "stop_sequence": sequence},
                                     "usage": usage})
        self._emit("message_stop", {"type": "message_stop"})
        self.done = True
