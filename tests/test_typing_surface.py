"""The typed surface's own rules (the full check, stubtest and mypy --strict, is
`make typecheck`, run by `make test`): the package ships py.typed and its stubs, every
allowlist entry says why, and a stubtest finding is turned into what to write where."""
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "typing"))
import check  # noqa: E402


def test_package_ships_py_typed_and_a_stub_per_module():
    pkg = REPO / "python" / "uvcore"
    assert (pkg / "py.typed").exists()
    # the core package; optional integrations (typed .py modules) are checked as they are
    modules = {"__init__", "_uvcore", "_loop", "_net", "_udp", "_subprocess", "_queue", "_pubsub", "_redis"}
    missing = sorted(m for m in modules if not (pkg / f"{m}.pyi").exists())
    assert not missing, f"modules without a stub: {missing} (write python/uvcore/<name>.pyi)"
    assert '"*.pyi"' in (REPO / "pyproject.toml").read_text() and '"py.typed"' in (REPO / "pyproject.toml").read_text()


def test_allowlist_entry_without_reason_is_refused(tmp_path, monkeypatch):
    allow = tmp_path / "allow.txt"
    allow.write_text("# comment\nuvcore._uvcore.Loop.time  # C method, signature not introspectable\n")
    monkeypatch.setattr(check, "ALLOWLIST", allow)
    assert check.allowlist_entries() == [("uvcore._uvcore.Loop.time", "C method, signature not introspectable")]
    allow.write_text("uvcore._uvcore.Loop.time\n")
    with pytest.raises(SystemExit, match="has no reason"):
        check.allowlist_entries()


def test_the_real_allowlist_entries_all_have_reasons():
    for pattern, reason in check.allowlist_entries():
        assert pattern and reason


def test_missing_stub_finding_says_where_and_what_to_add():
    out = ("error: uvcore._uvcore.Loop.remove_writer is not present in stub\nStub:\nMISSING\nRuntime:\n"
           "<method 'remove_writer' of 'uvcore._uvcore.Loop' objects>\n\n"
           "error: uvcore._uvcore.NoSuchThing is not present at runtime\n")
    advice = "\n".join(check.explain(out))
    assert "add to python/uvcore/_uvcore.pyi, in class Loop:" in advice
    # the line to add: from the live signature where Python can read one (3.13 reads C
    # methods' signatures), else a placeholder with the method's doc
    assert re.search(r"def remove_writer\(self.*\).*: \.\.\.", advice), advice
    assert "Stop watching fd for writing" in advice or "annotate every parameter" in advice
    assert "uvcore._uvcore.NoSuchThing is gone at runtime: remove it from python/uvcore/_uvcore.pyi" in advice


def test_readme_excerpt_that_drifted_is_reported(tmp_path, monkeypatch):
    repo = tmp_path
    (repo / "examples").mkdir()
    (repo / "examples" / "x.py").write_text("def f() -> int:\n    return 1\n")
    (repo / "README.md").write_text("<!-- excerpt: examples/x.py -->\n```python\ndef f() -> int:\n    return 2\n```\n"
                                    "```python\nprint(1)\n```\n")
    monkeypatch.setattr(check, "REPO", repo)
    files, problems = check.readme_snippets(tmp_path)
    assert [p.name for p in files] == ["readme_L7.py"]
    assert problems and "no longer in examples/x.py" in problems[0]
