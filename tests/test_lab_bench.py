"""The lab benchmark still runs: one tiny case per available loop, nothing saved."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_lab_support import has_real_pubsub  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not has_real_pubsub(), reason="the benchmark serves with uvcore.PubSub, not in this build yet")
def test_bench_lab_smoke_run_prints_the_table():
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_lab.py", "--sizes", "20", "--rounds", "1", "--no-save"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deliveries/s" in result.stdout and "asyncio" in result.stdout and "uvloop" in result.stdout
