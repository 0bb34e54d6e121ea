"""The stream translator every dialect pair shares: one SSE response translated chunk by chunk.

Envoy hands the provider's stream over in arbitrary pieces. This base owns what is the same for every
pair — the SSE parser (`extproc.sse`) with its partial-event buffer, `feed` and `close`, skipping what
is not a JSON object or has the wrong shape, and the cut-off: a provider stream that ends without its
final event ends the client's stream with the client dialect's error event, in one wording, never with
a normal end that would make a truncated answer look complete. A concrete translator maps events
(`on_event`) and writes its client dialect's error event (`fail`); its `usage` is what the provider
reported so far, final once the stream is `done`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import suppress
from typing import Any

import orjson

from extproc.dialects.base import ClientTools, Target, Usage
from extproc.dialects.body_checks import MALFORMED
from extproc.sse import SSEEvent, SSEParser

CUT_OFF = "the provider's stream ended early; the response is incomplete"
NO_DATA = "the provider's stream ended without any data"


class StreamTranslator(ABC):
    """One translated stream. `feed` provider bytes, get client bytes; `close` at the end of the stream."""

    @staticmethod
    @abstractmethod
    def read_usage(value: object) -> Usage:
        """The client dialect's `usage` object → Usage (a subclass names its spec's `usage`)."""

    def __init__(self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
                 client_tools: ClientTools | None = None) -> None:
        self.target = target
        self.input_tokens_estimate = input_tokens_estimate
        self.include_usage = include_usage  # an OpenAI client asked for the usage chunk
        self.client_tools = client_tools or {}
        self.started = False  # the provider's stream began (its first event was read)
        self.done = False  # the client's stream has ended: nothing more is written
        self._ended_usage: object = None  # the usage (client dialect) the stream ended with
        self._parser = SSEParser()
        self._out: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        for event in self._parser.feed(chunk):
            self._dispatch(event)
        return self._take()

    def close(self) -> bytes:
        for event in self._parser.close():
            self._dispatch(event)
        if not self.done:
            self.ended()
        return self._take()

    def ended(self) -> None:
        """The provider's stream ended before its final event: cut off."""
        self.fail(502, CUT_OFF if self.started else NO_DATA)

    @abstractmethod
    def on_event(self, kind: Any, doc: dict) -> None:
        """One provider event: its `type` (else its SSE event name) and its JSON data."""

    @abstractmethod
    def fail(self, status: int, message: str, code: str | None = None) -> None:
        """End the client's stream with its dialect's error event and set `done`: nothing may follow."""

    def on_done_marker(self) -> None:  # noqa: B027 - a hook: only streams from the hub need it
        """``data: [DONE]``, the end of a Chat stream (other dialects never send it): ignored here."""

    def emit(self, data: bytes) -> None:
        self._out.append(data)

    @property
    def usage(self) -> Usage:
        """The usage the provider reported so far (final once `done`); empty while it reported none.
        Normalised when read, so a provider that reports usage on every chunk costs nothing extra."""
        client_usage = self._ended_usage if self._ended_usage is not None else self.usage_so_far()
        return self.read_usage(client_usage) if client_usage is not None else {}

    def usage_so_far(self) -> object:
        """The usage in the client's dialect as far as the provider reported it (None: none yet)."""
        return None

    def ended_with(self, client_usage: object) -> None:
        """The usage in the client's dialect the stream ends with."""
        self._ended_usage = client_usage

    def _dispatch(self, event: SSEEvent) -> None:
        if self.done:
            return
        data = event.data
        if data[:1] != "{" and data.strip() == "[DONE]":
            self.on_done_marker()
            return
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return  # keep-alives and junk lines are not content
        if isinstance(doc, dict):
            with suppress(*MALFORMED):  # an event of the wrong shape is skipped, the stream goes on
                self.on_event(doc.get("type") or event.event, doc)

    def _take(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out
