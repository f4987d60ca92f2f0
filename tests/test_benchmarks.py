"""The benchmark scripts run: a quick pass of each, as CI can afford."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_engine_benchmark_quick_run_prints_a_table():
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "engine.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("image 320x240 RGB uint8")
    # One table per kernel, each with a header and a convfilter row at ratio 1.
    headers = [i for i, line in enumerate(lines) if line.split()[:2] == ["competitor", "ms"]]
    assert len(headers) == 5
    for i in headers:
        name, ms, runs, ratio = lines[i + 1].split()
        assert name == "convfilter" and float(ms) > 0 and runs == "1" and ratio == "1.00x"
    assert any(line.startswith("target") for line in lines) or "not installed" in result.stdout
