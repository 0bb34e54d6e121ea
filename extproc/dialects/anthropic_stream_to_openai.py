"""Anthropic Messages stream events → OpenAI `chat.completion.chunk` stream, chunk by chunk.

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

import contextlib
import time

import orjson

from extproc.dialects import anthropic as A
from extproc.dialects import openai as O
from extproc.dialects.shapes import MALFORMED, RESPONSE_TOOL, STOP_TO_FINISH, usage_to_openai
from extproc.sse import SSEEvent, SSEParser, encode, encode_json

_DONE = encode("[DONE]")
_CUT_OFF = "the provider's stream ended early (before message_stop); the response is incomplete"


class AnthropicToOpenAIStream:
    """One translated stream. `feed` provider bytes, get OpenAI SSE bytes; `close` at end of stream."""

    def __init__(self, include_usage: bool = False) -> None:
        self._parser = SSEParser()
        self._include_usage = include_usage
        self._out: list[bytes] = []
        self._id = "chatcmpl-stream"
        self._model: str | None = None
        self._created = int(time.time())
        self._tool_of_block: dict[int, int] = {}  # Anthropic block index → OpenAI tool_calls index
        self._usage: dict = {}
        self._finish: str | None = None
        self._answer_block: int | None = None  # the block of the forced tool carrying a structured answer
        self._finish_sent = False
        self._started = False
        self._done = False
        self.usage: dict | None = None  # final OpenAI usage, for metrics once the stream has ended

    def feed(self, chunk: bytes) -> bytes:
        self._handle(self._parser.feed(chunk))
        return self._flush()

    def close(self) -> bytes:
        self._handle(self._parser.close())
        if not self._done:
            self.usage = usage_to_openai(self._usage)
            message = _CUT_OFF if self._started else "provider stream ended without any data"
            self._out.append(O.stream_error_chunk(502, message))
            self._done = True
        return self._flush()

    def _handle(self, events: list[SSEEvent]) -> None:
        for event in events:
            with contextlib.suppress(*MALFORMED):  # a chunk of the wrong shape is skipped, the stream goes on
                self._event(event.event, event.data)

    def _flush(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def _chunk(self, delta: dict | None, finish: str | None = None, usage: dict | None = None) -> None:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish,
                                             "logprobs": None}]
        payload: dict = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                         "model": self._model, "choices": choices}
        if usage is not None:
            payload["usage"] = usage
        self._out.append(encode_json(payload))

    def _event(self, name: str | None, data: str) -> None:
        if self._done:
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type") or name
        if kind == "message_start":
            self._start(event.get("message") or {})
        elif kind == "content_block_start":
            self._block_start(event)
        elif kind == "content_block_delta":
            self._block_delta(event)
        elif kind == "message_delta":
            self._add_usage(event.get("usage"))
            reason = (event.get("delta") or {}).get("stop_reason")
            self._finish = STOP_TO_FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
            if self._answer_block is not None and not self._tool_of_block:  # only the structured answer's tool
                self._finish = "stop"
            self._send_finish()
        elif kind == "message_stop":
            self._stop()
        elif kind == "error":
            self._error(event.get("error") or {})

    def _start(self, message: dict) -> None:
        if not isinstance(message, dict):
            return
        self._started = True
        self._id = f"chatcmpl-{message.get('id') or 'stream'}"
        self._model = message.get("model")
        self._add_usage(message.get("usage"))
        self._chunk({"role": "assistant", "content": ""})

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
            self._chunk({"tool_calls": [call]})
        elif kind == "text" and block.get("text"):
            self._chunk({"content": block["text"]})
        elif kind == "thinking" and block.get("thinking"):
            self._chunk({"reasoning_content": block["thinking"]})

    def _block_delta(self, event: dict) -> None:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            self._chunk({"content": delta["text"]})
        elif kind == "thinking_delta" and delta.get("thinking"):
            self._chunk({"reasoning_content": delta["thinking"]})
        elif kind == "input_json_delta" and delta.get("partial_json") and event.get("index", -1) == self._answer_block:
            self._chunk({"content": delta["partial_json"]})
        elif kind == "input_json_delta" and delta.get("partial_json"):
            index = self._tool_of_block.get(event.get("index", -1))
            if index is not None:
                call = {"index": index, "function": {"arguments": delta["partial_json"]}}
                self._chunk({"tool_calls": [call]})

    def _send_finish(self) -> None:
        if not self._finish_sent:
            self._finish_sent = True
            self._chunk({}, self._finish or ("tool_calls" if self._tool_of_block else "stop"))

    def _stop(self) -> None:
        self._send_finish()
        self.usage = usage_to_openai(self._usage)
        if self._include_usage:
            self._chunk(None, usage=self.usage)
        self._out.append(_DONE)
        self._done = True

    def _error(self, error: object) -> None:
        error = error if isinstance(error, dict) else {"message": error if isinstance(error, str) else None}
        kind = error.get("type")
        status = A.TYPE_TO_STATUS.get(kind, 500) if isinstance(kind, str) else 500
        status = 503 if status == 529 else status
        self.usage = usage_to_openai(self._usage)
        self._out.append(O.stream_error_chunk(status, str(error.get("message") or "provider stream error")))
        self._done = True
