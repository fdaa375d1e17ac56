"""benchmarks/bench_queue.py runs end to end (a tiny smoke run; the real numbers come from
`make bench`)."""
import importlib.util
import pathlib

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_queue.py"


def test_bench_queue_smoke(capsys):
    spec = importlib.util.spec_from_file_location("bench_queue", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ratios = bench.main(["--items", "2000", "--rounds", "1", "--no-save"])
    assert {key.split("/")[0] for key in ratios} == {"spsc_unbounded", "spsc_bounded", "mpmc_10x10"}
    assert all(r > 0 for r in ratios.values())
    assert "uvcore.Queue" in capsys.readouterr().out
