"""Token usage as the gateway counts it (`base.Usage`), from whatever a provider reported.

Each dialect's `spec` reads its own `usage` object with `normalised`, so no reader ever guesses a
dialect from the keys it finds; translators report the usage of what they wrote, and a response that
goes through untouched is read with its dialect's `DialectSpec.usage_in`.
"""

from __future__ import annotations

from extproc.dialects.base import Usage


def tokens(value: object) -> int:
    """A token count from a provider: a non-negative int, anything else (null, "12", a dict) counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def dict_of(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def normalised(input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0,
               reasoning: int = 0) -> Usage:
    """`input` and `output` always (the provider reported usage), the others only when above 0, so plain
    usage stays plain in records and logs."""
    out = {"input": input_tokens, "output": output_tokens}
    out.update((k, v) for k, v in (("cache_read", cache_read), ("cache_write", cache_write),
                                   ("reasoning", reasoning)) if v > 0)
    return out


def most(total: Usage, more: Usage) -> None:
    """Merge `more` into `total`, keeping the larger count of each: streams repeat cumulative counts."""
    for key, value in more.items():
        if value:
            total[key] = max(total.get(key, 0), value)
