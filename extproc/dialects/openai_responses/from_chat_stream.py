"""Responses API stream events from a Chat Completions stream (a Responses client such as Codex, a Chat
provider, or composed, an Anthropic one).

Chat chunks → the Responses event grammar (`response.created`, `response.in_progress`, per item
`response.output_item.added` … `.done`, text and argument deltas, then `response.completed`, or
`response.incomplete` for length/content-filter stops, or `response.failed` for provider errors and
cut-off streams), `sequence_number` counting from 0. Items never interleave: the first function call
streams live, other calls (and text after them) are emitted whole after it; custom tool calls are
buffered, because their string input arrives JSON-encoded.
"""

from __future__ import annotations

import time
from typing import Any

from extproc.dialects.body_checks import is_int
from extproc.dialects.openai_chat.read import ToolCallSlots, reasoning_of
from extproc.dialects.openai_responses.from_chat import (
    call_item,
    response_id,
    response_object,
    status_of,
    usage_from_chat,
)
from extproc.dialects.openai_responses.spec import usage
from extproc.dialects.stream import StreamTranslator
from extproc.dialects.usage import dict_of
from extproc.sse import encode_json


class _Call:
    __slots__ = ("call_id", "name", "args", "index")

    def __init__(self, index: int) -> None:
        self.index = index
        self.call_id = ""
        self.name = ""
        self.args: list[str] = []


class ResponsesFromChatStream(StreamTranslator):
    """Chat chunks in, Responses events out."""

    read_usage = staticmethod(usage)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drop_reasoning = self.target is not None and self.target.reasoning == "drop"
        self._tools = self.client_tools
        self._estimate = self.input_tokens_estimate
        self._seq = 0
        self._rid = "resp_stream"
        self._model: object = None
        self._created = 0
        self._output: list[dict] = []  # finished items, for the final response
        self._open: dict | None = None  # the item streaming now: reasoning | message | function_call
        self._text: list[str] = []  # the open item's text or arguments so far
        self._calls: dict[int, _Call] = {}  # by ToolCallSlots key
        self._slots = ToolCallSlots()
        self._live: int | None = None  # the provider index of the call streaming live
        self._later: list[tuple[str, list[str]]] = []  # text/reasoning that came after the calls began
        self._finish: str | None = None
        self._usage: dict | None = None
        self._usage_early = False
        self._chars = 0

    def ended(self) -> None:
        if self._finish:  # finished, only the usage chunk or [DONE] is missing
            self._finalize()
        else:
            super().ended()

    def on_done_marker(self) -> None:
        if self.started or self._finish:
            self._finalize()

    def _emit(self, kind: str, payload: dict) -> None:
        self.emit(encode_json({"type": kind, "sequence_number": self._seq, **payload}, kind))
        self._seq += 1

    def on_event(self, kind: Any, chunk: dict) -> None:
        if "error" in chunk:
            error = dict_of(chunk["error"]) or {"message": str(chunk["error"])}
            code = error.get("code") if isinstance(error.get("code"), str) else "server_error"
            self.fail(500, str(error.get("message") or "provider stream error"), code)
            return
        if not self.started:
            self._start(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
            if not self._finish and not any(dict_of(c).get("finish_reason") for c in chunk.get("choices") or ()):
                self._usage_early = True
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and not choice.get("index"):
                self._choice(choice)
        if self._finish and self._usage and not self._usage_early:
            self._finalize()

    def _start(self, chunk: dict) -> None:
        self.started = True
        self._rid = response_id(chunk.get("id"))
        self._model = chunk.get("model")
        self._created = value if is_int(value := chunk.get("created")) else int(time.time())
        response = response_object(self._rid, self._model, self._created, "in_progress", [], None)
        self._emit("response.created", {"response": response})
        self._emit("response.in_progress", {"response": response})

    def _choice(self, choice: dict) -> None:
        delta = dict_of(choice.get("delta"))
        reasoning = reasoning_of(delta)
        if reasoning and not self._drop_reasoning:
            self._content("reasoning", reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._content("message", content)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._call(call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._finish = finish

    # -- items -----------------------------------------------------------------------------------

    def _content(self, kind: str, text: str) -> None:
        self._chars += len(text)
        if self._calls:  # items never interleave: after the calls
            if not self._later or self._later[-1][0] != kind:
                self._later.append((kind, []))
            self._later[-1][1].append(text)
            return
        if self._open is None or self._open["type"] != kind:
            self._open_item(kind)
        self._delta(text)

    def _open_item(self, kind: str, call: _Call | None = None) -> None:
        self._close_item()
        index = len(self._output)
        base = f"{self._rid[5:]}_{index}"
        if kind == "reasoning":
            item: dict = {"type": "reasoning", "id": f"rs_{base}", "summary": []}
        elif kind == "message":
            item = {"type": "message", "id": f"msg_{base}", "status": "in_progress", "role": "assistant",
                    "content": []}
        else:
            assert call is not None
            item = call_item(call.call_id, call.name, "", self._tools, "in_progress")
        self._open = item
        self._text = []
        self._emit("response.output_item.added", {"output_index": index, "item": item})
        ids = {"item_id": item["id"], "output_index": index}
        if kind == "reasoning":
            self._emit("response.reasoning_summary_part.added",
                       {**ids, "summary_index": 0, "part": {"type": "summary_text", "text": ""}})
        elif kind == "message":
            self._emit("response.content_part.added",
                       {**ids, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})

    def _delta(self, text: str) -> None:
        item = self._open
        assert item is not None
        self._text.append(text)
        ids = {"item_id": item["id"], "output_index": len(self._output)}
        if item["type"] == "reasoning":
            self._emit("response.reasoning_summary_text.delta", {**ids, "summary_index": 0, "delta": text})
        elif item["type"] == "message":
            self._emit("response.output_text.delta", {**ids, "content_index": 0, "delta": text, "logprobs": []})
        else:
            self._emit("response.function_call_arguments.delta", {**ids, "delta": text})

    def _close_item(self) -> None:
        item = self._open
        if item is None:
            return
        text = "".join(self._text)
        ids = {"item_id": item["id"], "output_index": len(self._output)}
        if item["type"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            self._emit("response.reasoning_summary_text.done", {**ids, "summary_index": 0, "text": text})
            self._emit("response.reasoning_summary_part.done", {**ids, "summary_index": 0, "part": part})
            item = {**item, "summary": [part]}
        elif item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": []}
            self._emit("response.output_text.done", {**ids, "content_index": 0, "text": text, "logprobs": []})
            self._emit("response.content_part.done", {**ids, "content_index": 0, "part": part})
            item = {**item, "status": "completed", "content": [part]}
        else:
            self._emit("response.function_call_arguments.done", {**ids, "name": item["name"], "arguments": text})
            item = {**item, "status": "completed", "arguments": text}
        self._emit("response.output_item.done", {"output_index": len(self._output), "item": item})
        self._output.append(item)
        self._open = None

    def _call(self, delta: dict) -> None:
        index = value if is_int(value := delta.get("index")) else len(self._calls)
        index = self._slots.key(index, delta.get("id"))
        function = dict_of(delta.get("function"))
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _Call(index)
            call_id = delta.get("id")
            call.call_id = call_id if isinstance(call_id, str) and call_id else f"call_{self._rid[5:]}_{index}"
        name = function.get("name")
        if isinstance(name, str) and name and not call.name:
            call.name = name
        args = function.get("arguments")
        if isinstance(args, str) and args:
            self._chars += len(args)
            call.args.append(args)
        custom = call.name in self._tools and self._tools[call.name].custom
        if self._live is None and call.name and len(self._calls) == 1 and not custom:
            self._live = index
            self._open_item("function_call", call)
        if self._live == index and call.args:
            text = "".join(call.args)
            call.args = []
            self._delta(text)

    def _finalize(self) -> None:
        self._close_item()
        for index in sorted(self._calls):
            call = self._calls[index]
            if index == self._live:
                continue
            self._whole_call(call)
        for kind, parts in self._later:
            self._open_item(kind)
            self._delta("".join(parts))
            self._close_item()
        usage = self._final_usage()
        self.ended_with(usage)
        status, incomplete = status_of(self._finish)
        response = response_object(self._rid, self._model, self._created, status, self._output, usage, incomplete)
        self._emit("response.completed" if status == "completed" else "response.incomplete", {"response": response})
        self.done = True

    def _whole_call(self, call: _Call) -> None:
        """A buffered call: added, its whole arguments (or custom input) at once, done."""
        arguments = "".join(call.args)
        index = len(self._output)
        done = call_item(call.call_id, call.name or "unknown", arguments, self._tools)
        item = {**done, "status": "in_progress", **({"input": ""} if "input" in done else {"arguments": ""})}
        ids = {"item_id": item["id"], "output_index": index}
        self._emit("response.output_item.added", {"output_index": index, "item": item})
        if done["type"] == "custom_tool_call":
            self._emit("response.custom_tool_call_input.delta", {**ids, "delta": done["input"]})
            self._emit("response.custom_tool_call_input.done", {**ids, "input": done["input"]})
        else:
            self._emit("response.function_call_arguments.delta", {**ids, "delta": arguments})
            self._emit("response.function_call_arguments.done", {**ids, "name": done["name"], "arguments": arguments})
        self._emit("response.output_item.done", {"output_index": index, "item": done})
        self._output.append(done)

    def usage_so_far(self) -> object:
        return usage_from_chat(self._usage) if self._usage else None

    def _final_usage(self) -> dict:
        if self._usage:
            return usage_from_chat(self._usage)
        out = (self._chars + 3) // 4
        return {"input_tokens": self._estimate, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": out,
                "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": self._estimate + out}

    def fail(self, status: int, message: str, code: str | None = None) -> None:
        """`response.failed`: what a Responses client reads as a failed response; nothing follows it."""
        if not self.started:
            self._start({})
        usage = self._final_usage()
        self.ended_with(usage)
        response = response_object(self._rid, self._model, self._created, "failed", self._output, usage,
                                   error={"code": code or "server_error", "message": message})
        self._emit("response.failed", {"response": response})
        self.done = True
