"""What a body of the wrong shape becomes, for every translator: a client's request field of the wrong
type is the client's 400 naming the field (never iterated character by character, never forwarded for
the provider to choke on); a provider's response the translator cannot read is a 502.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeGuard

from extproc.dialects.base import TranslationError

# What a body of the wrong shape (a number where a list belongs…) raises inside a translator.
MALFORMED = (TypeError, AttributeError, KeyError, ValueError)


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_list(body: dict, key: str) -> list:
    """`body[key]` as a list ([] when absent or null); anything else is a 400 naming `key`."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TranslationError(f"{key} must be an array, not {_kind(value)}", key)
    return value


def check_positive_int(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is not None and not (is_int(value) and value > 0):
        raise TranslationError(f"{key} must be a positive integer, not {_short(value)}", key)
    return value


def check_number(body: dict, key: str) -> float | int | None:
    value = body.get(key)
    if value is not None and not is_number(value):
        raise TranslationError(f"{key} must be a number, not {_kind(value)}", key)
    return value


def check_strings(value: object, key: str) -> list[str]:
    """A list of strings (a bare string is an error: it would be split into characters)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TranslationError(f"{key} must be an array of strings", key)
    return value


@contextmanager
def malformed_as(param: str) -> Iterator[None]:
    """Inside: a wrongly shaped value (a number where an object belongs…) is a 400 naming `param`."""
    try:
        yield
    except MALFORMED as exc:
        raise TranslationError(f"{param} is malformed: {exc}", param) from exc


def not_understood(detail: str) -> TranslationError:
    """A provider response of a shape the translator cannot read: a 502 in the client's dialect."""
    return TranslationError(f"the provider's response was not understood ({detail[:200]})", status=502)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else _kind(value)


def _kind(value: object) -> str:
    return {str: "a string", dict: "an object", list: "an array", bool: "a boolean"}.get(
        type(value), "a number" if is_number(value) else type(value).__name__
    )


_TAGS = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"\s+")


def body_excerpt(status: int, body: bytes) -> str:
    """A message for a non-JSON error body (an HTML error page, Envoy's plain-text local reply)."""
    text = body.decode("utf-8", "replace")[:2000] if body else ""
    text = _SPACES.sub(" ", _TAGS.sub(" ", text)).strip()[:300]
    return f"upstream error (HTTP {status})" + (f": {text}" if text else "")
