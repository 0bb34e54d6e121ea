"""Incremental Server-Sent Events parser and encoder.

Envoy hands us a response body in arbitrary chunks: an event, a line, even a ``\\r\\n`` pair can be split
anywhere. `SSEParser.feed` takes whatever arrived and returns the events that are now complete, keeping
the unfinished tail for the next call. Each byte is scanned once: the unfinished line is kept as a list of
pieces and joined only when its end arrives, so a huge event split into many chunks stays linear.

Follows the WHATWG field rules: ``event``, ``data`` (repeated lines joined with ``\\n``), comments
(lines starting with ``:``) ignored, one space after the colon stripped, ``id``/``retry`` ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its ``event:`` name (None when absent) and its data lines joined by ``\\n``."""

    event: str | None
    data: str


# A provider's line longer than this is not an event the gateway will hold in memory: the stream fails
# (in the client's dialect) instead of growing a worker without bound.
MAX_LINE_BYTES = 16 << 20


class EventTooLarge(ValueError):
    """A line of the stream exceeded MAX_LINE_BYTES."""


class SSEParser:
    """Feed bytes, get complete events. One parser per stream."""

    __slots__ = ("_pending", "_pending_bytes", "_skip_lf", "_event", "_data", "_started")

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # pieces of the line that has not ended yet
        self._pending_bytes = 0
        self._skip_lf = False  # the previous chunk ended in "\r": a leading "\n" belongs to it
        self._event: str | None = None
        self._data: list[str] = []
        self._started = False  # the UTF-8 BOM is only allowed at the very start

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse one chunk; return the events completed by it (possibly none)."""
        if not chunk:
            return []
        events: list[SSEEvent] = []
        pos = 0
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                pos = 1
        for match in _LINE_END.finditer(chunk, pos):
            piece = chunk[pos : match.start()]
            if self._pending:
                self._pending.append(piece)
                piece = b"".join(self._pending)
                self._pending, self._pending_bytes = [], 0
            self._line(piece, events)
            pos = match.end()
        if pos < len(chunk):
            self._pending.append(chunk[pos:])
            self._pending_bytes += len(chunk) - pos
            if self._pending_bytes > MAX_LINE_BYTES:
                raise EventTooLarge(f"a server-sent event line exceeded {MAX_LINE_BYTES} bytes")
        elif chunk[-1:] == b"\r":
            self._skip_lf = True
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: dispatch a last event that lacked its blank line (lenient, unlike browsers)."""
        events: list[SSEEvent] = []
        if self._pending:
            line, self._pending, self._pending_bytes = b"".join(self._pending), [], 0
            self._line(line, events)
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        line = raw.decode("utf-8", "replace")
        if not self._started:
            self._started = True
            if line.startswith("\ufeff"):
                line = line[1:]
        if not line:
            if self._data:
                events.append(SSEEvent(self._event, "\n".join(self._data)))
            self._event = None
            self._data = []
            return
        if line[0] == ":":
            return
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value or None


def encode(data: str, event: str | None = None) -> bytes:
    """One event as bytes; multi-line data becomes several ``data:`` lines."""
    head = f"event: {event}\n" if event else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (head + body + "\n").encode()


def encode_json(obj: object, event: str | None = None) -> bytes:
    """One event whose data is `obj` as compact JSON (never contains a newline)."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"
