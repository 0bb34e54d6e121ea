"""PII redaction cost on Claude Code's real bodies (tests/fixtures/claude_code), per mode.

`python benchmarks/bench_pii.py` prints the median time of `Redactor.redact` per body: the budget is
2 ms for a 120 KB body. With PII planted (a few values per body) and with `\\u` escapes, which make
the redactor re-serialise the body first, the worst case."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import orjson

from extproc.observe.pii import Redactor

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "claude_code"
PLANTED = "mail jane.doe@example.com, call (415) 555-0132, card 4111 1111 1111 1111, from 10.1.2.3 "


def median_ms(redactor: Redactor, body: bytes, rounds: int = 200) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        redactor.redact(body)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        doc = orjson.loads(path.read_bytes())
        doc = doc.get("body", doc)  # recorded_*.json wrap the body with its path and headers
        body = orjson.dumps(doc)
        doc["messages"][-1]["content"] = [{"type": "text", "text": PLANTED * 4}]
        planted = orjson.dumps(doc)
        escaped = planted.replace(b"@", b"\\u0040")
        for mode in ("mask", "tokenize", "partial"):
            r = Redactor(mode=mode, secret=b"benchmark-secret-0123")
            print(f"{path.name:32} {len(body) / 1024:6.1f} KB  {mode:8}  clean {median_ms(r, body):.2f} ms  "
                  f"planted {median_ms(r, planted):.2f} ms  escaped {median_ms(r, escaped):.2f} ms")


if __name__ == "__main__":
    main()
