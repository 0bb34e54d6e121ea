"""The one error type the pipeline answers in the client's own dialect (a 4xx, never a crash)."""

from __future__ import annotations

import orjson

# orjson reads JSON nested up to 1024 levels but writes only 255, and Python's own recursion stops
# deeper walks: a body that deep is the client's mistake, answered with a 400, never a traceback.
TOO_DEEP = "the request body is nested too deeply for the gateway to process; flatten it"


class ClientError(Exception):
    """A request the gateway will not serve as sent; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


def nested_too_deeply(exc: BaseException) -> bool:
    """Whether `exc` says a body was nested deeper than orjson or Python can walk (orjson's error is
    a bare TypeError, so its message tells it apart from a bug)."""
    return isinstance(exc, RecursionError) or (
        isinstance(exc, orjson.JSONEncodeError) and "Recursion limit" in str(exc))
