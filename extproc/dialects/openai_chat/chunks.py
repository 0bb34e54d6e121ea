"""The base of every stream translator that writes Chat Completions chunks (from Anthropic events, from
Responses events): the chunk envelope, the usage chunk and ``[DONE]`` at a normal end, and the error
chunk that ends a failed one.

A failed stream ends with ``data: {"error": …}`` and no ``[DONE]``: the OpenAI SDKs raise `APIError`
for it, and the missing [DONE] tells line-oriented clients the stream did not finish normally.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any

from extproc.dialects.openai_chat.spec import stream_error_chunk, usage
from extproc.dialects.stream import StreamTranslator
from extproc.sse import encode, encode_json

DONE = encode("[DONE]")


class ChatChunkStream(StreamTranslator):
    """Writes `chat.completion.chunk` events; a subclass maps its provider's events onto them."""

    read_usage = staticmethod(usage)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunk_id = "chatcmpl-stream"
        self.model: object = None
        self.created = int(time.time())

    def chunk(self, delta: dict | None, finish: str | None = None, usage: dict | None = None) -> None:
        """One chunk: a delta of choice 0 (with its finish reason), or none (the usage chunk)."""
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        payload: dict = {"id": self.chunk_id, "object": "chat.completion.chunk", "created": self.created,
                         "model": self.model, "choices": choices}
        if usage is not None:
            payload["usage"] = usage
        self.emit(encode_json(payload))

    def finish(self, client_usage: dict) -> None:
        """The normal end: the usage chunk when the client asked for it, then ``[DONE]``."""
        self.ended_with(client_usage)
        if self.include_usage:
            self.chunk(None, usage=client_usage)
        self.emit(DONE)
        self.done = True

    def fail(self, status: int, message: str, code: str | None = None) -> None:
        self.ended_with(self.final_usage())
        self.emit(stream_error_chunk(status, message, code))
        self.done = True

    @abstractmethod
    def final_usage(self) -> dict:
        """The stream's Chat usage as far as it is known (zeros when none came)."""
