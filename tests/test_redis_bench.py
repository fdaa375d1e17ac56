"""The Redis benchmark still runs: one tiny case on asyncio's loop, nothing saved."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_redis_smoke_run_prints_the_table():
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_redis.py", "--subs", "3", "--rounds", "1", "--messages", "20",
         "--loops", "asyncio", "--no-save"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("uvcore.PubSub.from_url", "broadcaster (Redis)", "redis-py pubsub", "deliveries/s"):
        assert name in result.stdout
