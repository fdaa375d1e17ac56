"""benchmarks/bench_loop.py runs end to end and merges its section into results.json without
touching the other sections (a tiny run; the real numbers come from `make bench`)."""
import importlib.util
import json
import pathlib

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_loop.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_loop", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_loop_smoke_writes_the_loop_section(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"queue": {"kept": True}}))
    bench = load_bench()
    only = ["call_soon", "getaddrinfo", "echo_1KiB"]
    bench.main(["--scale", "0.002", "--rounds", "1", "--only", ",".join(only),
                "--results", str(results)])

    data = json.loads(results.read_text())
    assert data["queue"] == {"kept": True}
    section = data["loop"]
    loops = section["meta"]["loops"]
    assert "asyncio" in loops and "uvcore" in loops
    assert set(section["workloads"]) == set(only)
    for name, res in section["workloads"].items():
        assert res["count"] > 0
        assert set(res["loops"]) == set(loops)
        for entry in res["loops"].values():
            assert len(entry["rounds_cpu_s"]) == 1
            assert entry["ops_per_cpu_s"] > 0
        assert res["speedup_vs_asyncio"] > 0
    out = capsys.readouterr().out
    assert "| call_soon" in out and "uvcore / asyncio" in out


def test_bench_loop_knows_every_workload_of_the_table():
    bench = load_bench()
    assert set(bench.WORKLOADS) == {
        "call_soon", "call_soon_3args", "call_soon_threadsafe", "timer_cancel", "sleep0", "future",
        "getaddrinfo", "echo_1KiB", "stream_64KiB", "timers", "tasks",
    }


def test_bench_loop_only_and_no_save(tmp_path):
    results = tmp_path / "results.json"
    bench = load_bench()
    res = bench.main(["--scale", "0.001", "--rounds", "1", "--only", "timers", "--loops", "asyncio,uvcore",
                      "--results", str(results), "--no-save"])
    assert list(res) == ["timers"]
    assert set(res["timers"]["loops"]) == {"asyncio", "uvcore"}
    assert not results.exists()


RUN_ALL = BENCH.parent / "run_all.py"


def load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_run_all_finds_every_benchmark_and_knows_their_quick_options():
    run_all = load_run_all()
    names = run_all.discover()
    assert names[:2] == ["loop", "net"]
    assert set(names) == {p.stem[len("bench_"):] for p in BENCH.parent.glob("bench_*.py")}
    assert set(run_all.QUICK_ARGS) <= set(names)


def test_run_all_quick_runs_the_chosen_benchmark_and_prints_its_table(capsys):
    run_all = load_run_all()
    assert run_all.main(["--quick", "--only", "loop", "--no-save"]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("##### all benchmark tables"):]
    assert "=== bench_loop: ok" in summary
    assert "| tasks" in summary


def test_run_all_rejects_an_unknown_benchmark():
    run_all = load_run_all()
    with pytest.raises(SystemExit) as info:
        run_all.main(["--only", "nosuch"])
    assert info.value.code == 2
