"""PII detection and redaction for JSON bodies: e-mail addresses, phone numbers, US SSNs, credit
card numbers (Luhn-checked), IPv4/IPv6 addresses and secrets: API keys (`sk-…`, `sk-ant-…`, AWS access
key ids and secret access keys, GitHub `ghp_…`/`github_pat_…`, Slack, Stripe `sk_live_…`/`rk_live_…`, this
gateway's own `lr-…` keys), JWTs and bearer tokens. Phone numbers: North American with separators,
international with a leading `+` (with separators, or E.164's bare `+` and 8-15 digits).

Why this shape: it must cost milliseconds on Claude Code's 120 KB bodies, so there is no NER and no
walk over the JSON tree. All kinds are one RE2 alternation scanned once over the body (linear time,
no backtracking, whatever a client sends); the rare candidates are then checked in Python (Luhn,
`ipaddress`). A body whose strings use `\\uXXXX` or `\\/` escapes — which could split a value so that
no pattern sees it whole — is first re-serialised by orjson, which writes every string plainly; other
bodies are scanned as they are. A digit run standing as a JSON number (between `:`, `,` or `[` and
`,`, `]` or `}`) is a number, not PII: Claude Code's tool schemas are full of 16-digit `maximum`s.

Replacements are JSON-safe, so the result is still the same JSON document with values replaced.
Modes: `mask` (`[EMAIL]`), `remove` (nothing), `tokenize` (`[EMAIL:1a2b3c4d5e6f]`, an HMAC-SHA256 of the
value keyed by a configured secret: the same value gets the same token, across requests and
workers, and nobody without the secret can test a guess), `partial` (enough to recognise, not to use:
`j***@example.com`, `[CARD …1111]`, the /24 of an IPv4).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from typing import Literal

import orjson
import re2

Kind = Literal["email", "phone", "ssn", "credit_card", "ip", "secret"]
Mode = Literal["mask", "remove", "tokenize", "partial"]
KINDS: tuple[Kind, ...] = ("email", "phone", "ssn", "credit_card", "ip", "secret")

# Order matters: at one position the first alternative that matches wins (a key before an e-mail,
# a card before a phone number).
_PATTERNS: dict[str, str] = {
    "secret": r"\bsk-ant-[A-Za-z0-9_-]{16,}|\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
              r"|\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{22,}|\bxox[abprs]-[A-Za-z0-9-]{10,}"
              r"|\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|\blr-[A-Za-z0-9_-]{32,}"
              r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
              r"|(?i:\bbearer) +[A-Za-z0-9._~+/-]{20,}=*",
    # AWS secret access keys: 40 characters of base64 standing alone; told from paths, hashes and
    # words in Python (`_aws_secret`), since RE2 has no look-around.
    "aws_secret": r"\b[A-Za-z0-9/+]{40}\b",
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    "credit_card": r"\b[2-6]\d{3}(?:[ -]?\d){9,15}\b",  # issuers' first digits: 2-6
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "ipv4": r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
    "ipv6": r"(?i:\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b"
            r"|\b(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?\b)",
    # North American with separators, or international with a leading +: bare digit runs are dates,
    # builds and ids far more often than phone numbers.
    "phone": r"(?:\+1[ .-]?)?(?:\(\d{3}\) ?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b|\+\d{1,3}(?:[ .-]\d{1,4}){2,5}\b"
             r"|\+[1-9]\d{7,14}\b",
}
_KIND_OF = {"ipv4": "ip", "ipv6": "ip", "aws_secret": "secret"}
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+=")
_NUMBER_BEFORE = frozenset(b":,[ \n\t")
_NUMBER_AFTER = frozenset(b",]} \n\t")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class Redactor:
    """One compiled scanner for the configured kinds and mode; thread-safe (RE2 is)."""

    def __init__(self, kinds: Iterable[str] = KINDS, mode: Mode = "mask", secret: bytes = b"") -> None:
        self.kinds = frozenset(kinds)
        if mode == "tokenize" and not secret:
            raise ValueError("pii.mode tokenize needs a secret (pii.token_secret_env)")
        self.mode = mode
        self.secret = secret
        wanted = [name for name in _PATTERNS if _KIND_OF.get(name, name) in self.kinds]
        self._scanner = re2.compile("|".join(f"(?P<{n}>{_PATTERNS[n]})" for n in wanted).encode()) if wanted else None

    def redact(self, body: bytes) -> bytes:
        """`body` with every detected value replaced; the same object when nothing was found."""
        if self._scanner is None or not body:
            return body
        text = body
        if b"\\u" in body or b"\\/" in body:
            try:
                text = orjson.dumps(orjson.loads(body))
            except orjson.JSONDecodeError:
                text = body  # not JSON: scanned as text
        out: list[bytes] = []
        last = 0
        strings = _StringTracker(text)
        for m in self._scanner.finditer(text):
            # Each alternative is one named group and the patterns' own groups are non-capturing, so
            # every match names the pattern that found it.
            group = m.lastgroup
            assert group is not None
            name = group.decode() if isinstance(group, bytes) else group
            start, end = m.span()
            replacement = self._replacement(name, text[start:end].decode("utf-8", "replace"), text, start, end,
                                            strings)
            if replacement is None:
                continue
            out += (text[last:start], replacement.encode())
            last = end
        if not out:
            return body  # nothing found: the client's own bytes
        out.append(text[last:])
        return b"".join(out)

    def _replacement(self, name: str, value: str, text: bytes, start: int, end: int,
                     strings: _StringTracker) -> str | None:
        kind = _KIND_OF.get(name, name)
        if kind in ("credit_card", "phone", "ssn") and value.isdigit() and _a_json_number(text, start, end, strings):
            return None
        if kind == "credit_card":
            digits = value.replace(" ", "").replace("-", "")
            if not luhn(digits):
                return None
        elif kind == "ip":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                return None
        elif kind == "phone" and sum(ch.isdigit() for ch in value) < 9:
            return None
        if name == "aws_secret" and not _aws_secret(value, text, start, end):
            return None
        return self._mode(kind, value)

    def _mode(self, kind: str, value: str) -> str:
        label = kind.upper()
        if self.mode == "remove":
            return ""
        if self.mode == "tokenize":
            token = hmac.new(self.secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:12]
            return f"[{label}:{token}]"
        if self.mode == "partial":
            return _partial(kind, value)
        return f"[{label}]"


def _aws_secret(value: str, text: bytes, start: int, end: int) -> bool:
    """A 40-character run that is a whole token (not a window of a longer base64 run), mixes upper
    and lower case and digits (git hashes are lower-case hex) and is not a path (few slashes)."""
    if (start > 0 and text[start - 1] in _BASE64) or (end < len(text) and text[end] in _BASE64):
        return False
    return (any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value)
            and value.count("/") <= 3)


def _a_json_number(text: bytes, start: int, end: int, strings: _StringTracker) -> bool:
    return (start > 0 and text[start - 1] in _NUMBER_BEFORE and (end >= len(text) or text[end] in _NUMBER_AFTER)
            and not strings.inside(start))


class _StringTracker:
    """Whether a position is inside a JSON string: the quotes before it that are not escaped are odd.
    Counted incrementally (matches come in order) with bytes.count, so a body costs one pass in C.
    A quote after an escaped backslash (`\\"`) ends a string; longer backslash runs are not told apart."""

    def __init__(self, text: bytes) -> None:
        self.text = text
        self.pos = 0
        self.quotes = 0

    def inside(self, pos: int) -> bool:
        t, a = self.text, self.pos
        self.quotes += t.count(b'"', a, pos) - t.count(b'\\"', a, pos) + t.count(b'\\\\"', a, pos)
        self.pos = pos
        return self.quotes % 2 == 1


def _partial(kind: str, value: str) -> str:
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "ip":
        ip = ipaddress.ip_address(value)
        net = ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 48}", strict=False)
        return f"[IP {net}]"
    if kind == "secret":
        return f"{value[:7]}***"
    digits = "".join(ch for ch in value if ch.isdigit())
    return f"[{kind.upper()} …{digits[-4:]}]"
