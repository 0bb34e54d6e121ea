"""A recorded stream turned back into the message it delivered, in the client's dialect, so that
`lunaroute sessions show` reads like the non-streaming answer (text, thinking, tool calls with their
parsed arguments, stop reason, usage). Runs in the record writer thread, never on a request."""

from __future__ import annotations

from typing import Any

import orjson

from ..sse import SSEParser


def _events(raw: bytes) -> list[Any]:
    parser = SSEParser()
    out = []
    for event in [*parser.feed(raw), *parser.feed(b"\n\n")]:
        if not event.data or event.data == "[DONE]":
            continue
        try:
            out.append(orjson.loads(event.data))
        except orjson.JSONDecodeError:
            continue
    return [e for e in out if isinstance(e, dict)]


def _json_or_text(text: str) -> Any:
    try:
        return orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return text


def _anthropic(events: list[dict]) -> dict:
    message: dict[str, Any] = {"content": []}
    blocks: dict[int, dict] = {}
    partial: dict[int, str] = {}
    for e in events:
        kind = e.get("type")
        if kind == "message_start" and isinstance(e.get("message"), dict):
            message = {**e["message"], "content": []}
        elif kind == "content_block_start" and isinstance(e.get("content_block"), dict):
            blocks[e.get("index", len(blocks))] = dict(e["content_block"])
        elif kind == "content_block_delta" and isinstance(e.get("delta"), dict):
            block = blocks.setdefault(e.get("index", 0), {"type": "text", "text": ""})
            delta = e["delta"]
            for field, key in (("text", "text"), ("thinking", "thinking"), ("signature", "signature")):
                if field in delta:
                    block[key] = block.get(key, "") + str(delta[field])
            if "partial_json" in delta:
                partial[e.get("index", 0)] = partial.get(e.get("index", 0), "") + str(delta["partial_json"])
        elif kind == "message_delta":
            message.update({k: v for k, v in (e.get("delta") or {}).items()})
            message["usage"] = {**(message.get("usage") or {}), **(e.get("usage") or {})}
        elif kind == "error":
            message["error"] = e.get("error")
    for index, text in partial.items():
        blocks[index]["input"] = _json_or_text(text)
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def _chat(events: list[dict]) -> dict:
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict] = {}
    out: dict[str, Any] = {"object": "chat.completion"}
    for e in events:
        if "error" in e:
            out["error"] = e["error"]
        for key in ("id", "model", "created"):
            if key in e:
                out[key] = e[key]
        if isinstance(e.get("usage"), dict):
            out["usage"] = e["usage"]
        for choice in e.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                text.append(str(delta["content"]))
            if delta.get("reasoning_content"):
                reasoning.append(str(delta["reasoning_content"]))
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(call.get("index", len(calls)),
                                        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                slot["id"] = call.get("id") or slot["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                out["finish_reason"] = choice["finish_reason"]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    choice = {"index": 0, "message": message, "finish_reason": out.pop("finish_reason", None)}
    return {**out, "choices": [choice]}


def _responses(events: list[dict]) -> dict:
    last: dict = {}
    for e in events:
        if isinstance(e.get("response"), dict):
            last = e["response"]  # created → in_progress → completed: each holds the whole response so far
        elif e.get("type") == "error":
            last = {**last, "error": e.get("error") or e}
    return last


def reassemble(dialect: str, raw: bytes) -> dict | None:
    """The final message of a stream, or None when `raw` holds no events."""
    events = _events(raw)
    if not events:
        return None
    if dialect == "anthropic":
        return _anthropic(events)
    if dialect == "openai-responses":
        return _responses(events)
    return _chat(events)
