"""What one answer of a provider teaches about the key that got it: a pure function.

A 429 or 529 cools the key until the provider says it is back: `retry-after` (seconds or an HTTP
date), else the latest `anthropic-ratelimit-*-reset` (RFC 3339) or `x-ratelimit-reset-*` (OpenAI's
durations, `6m0s`, `20ms`) that is exhausted, else a backoff that doubles on each repeat. A 401 or 403
revokes the key until its secret changes. Anything else teaches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

# The rate-limit headers the learner and `lunaroute pools` read (Envoy's attempt log carries them).
RATE_HEADERS = (
    "retry-after",
    "anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-output-tokens-reset",
    "anthropic-ratelimit-unified-reset",
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
)
COOLING_STATUSES = frozenset({429, 529})
REVOKING_STATUSES = frozenset({401, 403})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class Lesson:
    """`until`: the key is out until then (epoch seconds); `revoked`: until its secret changes."""

    until: float
    revoked: bool = False
    reason: str = ""


def _seconds(value: str) -> float | None:
    """OpenAI's reset durations (`1s`, `6m0s`, `20ms`, `1h2m3.5s`) or plain seconds."""
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _epoch(value: str) -> float | None:
    """An RFC 3339 time (Anthropic's resets) or an HTTP date (`retry-after`)."""
    value = value.strip()
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def provider_says(headers: Mapping[str, str], now: float) -> float | None:
    """When the provider says the key is usable again (epoch seconds), or None when it does not."""
    retry_after = headers.get("retry-after")
    if retry_after:
        seconds = _seconds(retry_after)
        if seconds is not None:
            return now + seconds
        at = _epoch(retry_after)
        if at is not None:
            return max(at, now)
    resets: list[float] = []
    for name, value in headers.items():
        if name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            remaining = headers.get(name.removesuffix("-reset") + "-remaining")
            at = _epoch(value)
            if at is not None and remaining in (None, "0"):
                resets.append(at)
        elif name.startswith("x-ratelimit-reset-"):
            remaining = headers.get("x-ratelimit-remaining-" + name.removeprefix("x-ratelimit-reset-"))
            seconds = _seconds(value)
            if seconds is not None and remaining in (None, "0"):
                resets.append(now + seconds)
    return max(resets) if resets else None


def learn(status: int, headers: Mapping[str, str], now: float, strikes: int, backoff_s: float,
          max_cooldown_s: float) -> Lesson | None:
    """What an answer with `status` and `headers` teaches about its key; `strikes`: how many times in
    a row the key was refused before (the backoff doubles with each)."""
    if status in REVOKING_STATUSES:
        return Lesson(until=float("inf"), revoked=True, reason=str(status))
    if status not in COOLING_STATUSES:
        return None
    said = provider_says(headers, now)
    if said is None:
        said = now + backoff_s * 2 ** min(strikes, 16)
    return Lesson(until=min(said, now + max_cooldown_s), reason=str(status))
