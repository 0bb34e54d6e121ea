"""PII redaction: golden fixtures for every kind and mode (tests/fixtures/pii/cases.json), values
split by JSON string escapes included, and what must never be taken for PII."""

from __future__ import annotations

import orjson
import pytest

from extproc import config
from extproc.config import ConfigError
from extproc.observe.pii import Redactor, luhn
from tests.conftest import FIXTURES

GOLDEN = orjson.loads((FIXTURES / "pii" / "cases.json").read_bytes())
SECRET = GOLDEN["secret"].encode()
MODES = ("mask", "remove", "tokenize", "partial")


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["name"])
@pytest.mark.parametrize("mode", MODES)
def test_each_kind_is_redacted_per_mode_as_the_golden_fixture_says(case: dict, mode: str) -> None:
    out = Redactor(mode=mode, secret=SECRET).redact(case["input"].encode())
    assert orjson.loads(out) == case["expected"][mode]  # still the same JSON document


@pytest.mark.parametrize("case", [c for c in GOLDEN["cases"] if c["kind"]], ids=lambda c: c["name"])
def test_a_kind_not_detected_is_left_alone(case: dict) -> None:
    others = [k for k in ("email", "phone", "ssn", "credit_card", "ip", "secret") if k != case["kind"]]
    body = case["input"].encode()
    assert orjson.loads(Redactor(others).redact(body)) == orjson.loads(body)


def test_nothing_found_leaves_the_clients_bytes_as_they_were() -> None:
    body = (FIXTURES / "claude_code" / "request.json").read_bytes()
    assert Redactor().redact(body) is body  # tool schemas' 16-digit maximums, dates, ids are not PII


def test_tokens_are_stable_per_value_whatever_its_escaping_and_keyed_by_the_secret() -> None:
    plain, escaped = b'{"a":"mail bob@example.com"}', b'{"a":"mail bob\\u0040example.com"}'
    one, other = Redactor(mode="tokenize", secret=SECRET), Redactor(mode="tokenize", secret=b"another-secret-0123")
    assert one.redact(plain) == one.redact(escaped) != other.redact(plain)
    assert b"bob" not in one.redact(plain)


def test_luhn() -> None:
    assert luhn("4111111111111111") and luhn("378282246310005") and not luhn("4111111111111112")


def test_tokenize_needs_a_secret_in_the_environment() -> None:
    pii = config.parse({"providers": {"a": {"type": "anthropic", "base_url": "https://api.anthropic.com"}},
                        "pii": {"mode": "tokenize", "token_secret_env": "LR_PII"}}, env={}).pii
    with pytest.raises(ConfigError, match="pii.token_secret_env"):
        pii.secret({})
    assert pii.secret({"LR_PII": "s" * 16}) == b"s" * 16


# Issue #23: kinds the first version missed. Each value is a made-up instance of its shape.
MISSED = {
    "e164_phone": ("call now: +14155552671", "[PHONE]"),
    "e164_phone_de": ("ruf an: +4930901820", "[PHONE]"),
    "jwt": ("token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "[SECRET]"),
    "aws_secret": ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "[SECRET]"),
    "github_pat": ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV", "[SECRET]"),
    "stripe_live": ("sk_live_51Habcdefghijklmnopqrstuv", "[SECRET]"),
    "stripe_restricted": ("rk_live_51Habcdefghijklmnopqrstuv", "[SECRET]"),
    "stripe_test": ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "[SECRET]"),
    "gateway_key": ("lr-Qx3yZ0p9T_aB-cDeFgHiJkLmNoPqRsTuVwXyZ0123456", "[SECRET]"),
}


@pytest.mark.parametrize("name", sorted(MISSED))
def test_kinds_issue_23_found_missing_are_redacted(name: str) -> None:
    text, label = MISSED[name]
    out = orjson.loads(Redactor().redact(orjson.dumps({"content": text})))["content"]
    value = text.split()[-1]
    assert value not in out and label in out


@pytest.mark.parametrize("text", [
    "commit 9fceb02d0ae598e95dc970b74d4e2bde8b1a2a3c fixed it",  # a git hash: lower-case hex
    "see /usr/lib/python3/dist-packages/setuptools/command/build_py",  # a path
    "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMN",  # letters only
    "build 20261207 and version +1",  # short numbers, a lone plus
])
def test_what_looks_like_the_new_kinds_but_is_not_stays(text: str) -> None:
    body = orjson.dumps({"content": text})
    assert Redactor().redact(body) is body
