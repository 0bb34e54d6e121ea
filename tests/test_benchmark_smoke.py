"""The benchmark runs end to end and reports sane numbers (seconds, two scenarios). Nothing here is
about speed: the figures depend on the machine; this only keeps the benchmark working."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def test_the_benchmark_runs_and_reports_sane_numbers(tmp_path: Path) -> None:
    if shutil.which("hey") is None:
        if os.environ.get("CI"):
            pytest.fail("hey is not installed; .ci/run installs it with apt-get")
        pytest.skip("hey is not installed (apt-get install hey; .ci/run installs it)")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gateway.py"), "--smoke", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    assert (tmp_path / "latest.png").stat().st_size > 1000
    assert report["mock_direct_rps"] > 0
    for row in report["scenarios"]:
        assert row["gateway"]["load"]["errors"] == 0 and row["bare"]["load"]["errors"] == 0, row
        assert 0 < row["ratio_rps"] < 2, row
        assert row["worker_cpu_us_per_request"] >= 0
    fast, python = report["scenarios"]
    # the fast path's only worker CPU is its metering, after the response; a translated request's is more
    assert fast["worker_cpu_us_per_request"] < python["worker_cpu_us_per_request"] / 3
    assert report["mock_direct_rps"] > 0 and report["bare_small_rps"] > 0
