"""The lab benchmark still runs: one tiny case per loop and subscription mode, nothing saved."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_lab_smoke_run_prints_the_table():
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_lab.py", "--sizes", "20", "--rounds", "1", "--messages", "5", "--no-save"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deliveries/s" in result.stdout
    for mode in ("plain", "shared", "fanout"):
        for loop in ("asyncio", "uvloop", "uvcore"):
            assert f"{mode} {loop:>8} N=   20:" in result.stdout, result.stdout
    assert "server memory per subscribed connection, fanout/uvcore N=20:" in result.stdout, result.stdout
    assert "N=20: uvcore shared + C fan-out vs stock Strawberry on uvloop:" in result.stdout, result.stdout
