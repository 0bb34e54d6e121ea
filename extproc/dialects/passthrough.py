"""Same dialect on both sides: paths, bodies, streams and errors go through untouched.

Upstream Anthropic errors in particular must reach Claude Code word for word (it acts on their text).
"""

from __future__ import annotations

from extproc.dialects.base import ClientTools, Dialect, Target


class PassthroughStream:
    """Identity stream: every chunk comes out exactly as it went in."""

    usage: dict | None = None

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def close(self) -> bytes:
        return b""


class Passthrough:
    """Translator for client == provider."""

    def __init__(self, dialect: Dialect) -> None:
        self.client: Dialect = dialect
        self.provider: Dialect = dialect

    def request_path(self, client_path: str) -> str:
        return client_path

    def request_body(self, body: dict, target: Target) -> dict:
        return body

    def response_body(self, body: dict, target: Target | None = None,
                      client_tools: ClientTools | None = None) -> dict:
        return body

    def stream(
        self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
        client_tools: ClientTools | None = None,
    ) -> PassthroughStream:
        return PassthroughStream()

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return status, body
