"""The one error type the pipeline answers in the client's own dialect (a 4xx, never a crash)."""

from __future__ import annotations


class ClientError(Exception):
    """A request the gateway will not serve as sent; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
