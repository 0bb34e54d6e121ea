"""Golden contract fixtures: every translation row of the spec has a directory in fixtures/translate.

Each directory holds `case.json` (client, provider, kind, optional target/stream options, a `doc`
sentence saying which behaviour it pins) plus the input and the expected output a reviewer can open:

- request:  request.<client>.json  → request.<provider>.json  (or `expect_error.param`)
- response: response.<provider>.json → response.<client>.json
- stream:   stream.<provider>.sse  → stream.<client>.sse
- error:    error.<provider>.json|txt (+ `status`) → error.<client>.json (`{"status": …, "body": …}`)
- client == provider (passthrough): the input must come out byte for byte.

Streams are fed one byte at a time *and* in one piece; both must give the expected transcript.
`LUNAROUTE_REGEN_GOLDEN=1 pytest tests/test_translate_golden.py` rewrites the expected files (review the
diff before committing).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import orjson
import pytest

from extproc.dialects import Target, TranslationError, translator_for
from extproc.sse import SSEParser

ROOT = Path(__file__).parent / "fixtures" / "translate"
CASES = sorted(p.name for p in ROOT.iterdir() if (p / "case.json").exists())
REGEN = os.environ.get("LUNAROUTE_REGEN_GOLDEN") == "1"
DEFAULT_TARGET = {"name": "provider"}
_CREATED = re.compile(rb'"created":\d+')


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _events(raw: bytes) -> list[tuple[str | None, object]]:
    parser = SSEParser()
    events = parser.feed(raw) + parser.close()
    out = []
    for e in events:
        try:
            data = orjson.loads(e.data)
        except orjson.JSONDecodeError:
            data = e.data
        if isinstance(data, dict) and "created" in data:
            data["created"] = 0
        out.append((e.event, data))
    return out


def _normalize(obj: dict) -> dict:
    return {**obj, "created": 0} if "created" in obj else obj


def _check(expected_path: Path, actual: object) -> None:
    if REGEN:
        _dump(expected_path, actual)
    assert json.loads(expected_path.read_text()) == actual


@pytest.mark.parametrize("case", CASES)
def test_translation_matches_golden_fixture(case: str) -> None:
    d = ROOT / case
    meta = json.loads((d / "case.json").read_text())
    client, provider, kind = meta["client"], meta["provider"], meta["kind"]
    translator = translator_for(client, provider)
    target = Target(**{"dialect": provider, **DEFAULT_TARGET, **meta.get("target", {})})

    if client == provider:
        _check_identity(d, translator, kind, client, meta)
    elif kind == "request":
        body = json.loads((d / f"request.{client}.json").read_text())
        if "expect_error" in meta:
            with pytest.raises(TranslationError) as info:
                translator.request_body(body, target)
            assert info.value.param == meta["expect_error"]["param"]
            return
        _check(d / f"request.{provider}.json", translator.request_body(body, target))
    elif kind == "response":
        body = json.loads((d / f"response.{provider}.json").read_text())
        _check(d / f"response.{client}.json", _normalize(translator.response_body(body, target)))
    elif kind == "stream":
        raw = (d / f"stream.{provider}.sse").read_bytes()
        options = meta.get("stream", {})
        whole = translator.stream(target, **options)
        out = whole.feed(raw) + whole.close()
        bytewise = translator.stream(target, **options)
        split = b"".join(bytewise.feed(raw[i : i + 1]) for i in range(len(raw))) + bytewise.close()
        assert _events(split) == _events(out)
        expected = d / f"stream.{client}.sse"
        if REGEN:  # timestamps are normalized when comparing; keep the file stable for review
            expected.write_bytes(_CREATED.sub(b'"created":0', out))
        assert _events(out) == _events(expected.read_bytes())
    elif kind == "error":
        source = d / f"error.{provider}.json"
        raw = source.read_bytes() if source.exists() else (d / f"error.{provider}.txt").read_bytes()
        status, body = translator.error(meta["status"], raw)
        result = {"status": status, "body": orjson.loads(body)}
        _check(d / f"error.{client}.json", result)
    else:
        raise AssertionError(f"unknown fixture kind {kind!r}")


def _check_identity(d: Path, translator, kind: str, dialect: str, meta: dict) -> None:
    """Same dialect on both sides: whatever goes in comes out byte for byte."""
    if kind == "stream":
        raw = (d / f"stream.{dialect}.sse").read_bytes()
        stream = translator.stream()
        out = b"".join(stream.feed(raw[i : i + 7]) for i in range(0, len(raw), 7)) + stream.close()
        assert out == raw
    elif kind == "error":
        raw = (d / f"error.{dialect}.json").read_bytes()
        assert translator.error(meta["status"], raw) == (meta["status"], raw)
    else:
        raise AssertionError(f"unknown passthrough fixture kind {kind!r}")
