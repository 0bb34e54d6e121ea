"""What the pipeline decides, as plain data; the gRPC servicer turns it into Envoy's messages.

Keeping these free of protobuf lets the whole request pipeline be tested with dicts and bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

BodyMode = Literal["NONE", "BUFFERED", "STREAMED", "FULL_DUPLEX_STREAMED"]


@dataclass(slots=True)
class Immediate:
    """Answer the client now; the request goes no further."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    details: str = ""


@dataclass(slots=True)
class Reply:
    """The answer to one phase: continue, optionally with mutations."""

    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    body: bytes | None = None  # replace the body (or this streamed chunk) with these bytes
    # FULL_DUPLEX_STREAMED only: `body` is sent as a streamed response; True ends the client's response.
    end_of_stream: bool | None = None
    clear_route_cache: bool = False
    # Only on answers to headers: switch how Envoy sends the rest of this exchange.
    request_body_mode: BodyMode | None = None
    response_header_mode: Literal["SEND", "SKIP"] | None = None
    response_body_mode: BodyMode | None = None
    immediate: Immediate | None = None

    @classmethod
    def reply_now(cls, status: int, body: bytes, content_type: str = "application/json",
                  details: str = "", headers: dict[str, str] | None = None) -> Reply:
        hdrs = {"content-type": content_type, **(headers or {})}
        return cls(immediate=Immediate(status, body, hdrs, details))



class ProcessingStream(Protocol):
    """What the servicer drives for one ext_proc stream: the request phase (`exchange.Exchange`) or one
    attempt of a fallback chain (`attempts.AttemptExchange`). Each `on_*` answers one message."""

    response: Any  # what reads the response body, if anything (a translation, a meter)

    def on_request_headers(self, headers: dict[str, str], end_of_stream: bool) -> Reply: ...

    def on_request_body(self, body: bytes) -> Reply: ...

    def on_response_headers(self, headers: dict[str, str]) -> Reply: ...

    def on_response_body(self, chunk: bytes, end_of_stream: bool) -> Reply: ...

    def internal_error(self, phase: str) -> Reply: ...
