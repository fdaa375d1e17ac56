"""The typed surface check run by `make typecheck` (and so by `make test`).

1. mypy's stubtest compares the stubs (python/uvcore/*.pyi) with the imported package,
   _uvcore's C types included, with the allowlist next to this file. When it fails, this
   script says, for each finding, which stub file and class to edit and what to write.
2. mypy --strict on examples/ and on every ```python block of README.md (written to a
   temporary directory, one module per block, named after its line in the README).

Exit status 0 when everything is clean. Run from the repository root with the venv's python.
"""
from __future__ import annotations

import inspect
import importlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALLOWLIST = Path(__file__).with_name("stubtest_allowlist.txt")
PKG = REPO / "python" / "uvcore"


def allowlist_entries() -> list[tuple[str, str]]:
    """(pattern, reason) for each entry; an entry without a reason is an error."""
    entries = []
    for number, line in enumerate(ALLOWLIST.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, _, reason = line.partition("#")
        if not reason.strip():
            raise SystemExit(f"{ALLOWLIST}:{number}: allowlist entry {pattern.strip()!r} has no reason "
                             "(write it after '#': why stubtest cannot or should not check this)")
        entries.append((pattern.strip(), reason.strip()))
    return entries


def _stub_file(module: str) -> Path:
    return PKG / (module.split(".")[-1] + ".pyi") if "." in module else PKG / "__init__.pyi"


def _suggest(name: str) -> str:
    """What to write in a stub for runtime object `name` (dotted), from its live signature."""
    parts = name.split(".")
    obj, owner, module = None, None, None
    for i in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        obj = module
        for attr in parts[i:]:
            owner, obj = obj, getattr(obj, attr)
        break
    leaf = parts[-1]
    if inspect.isclass(obj):
        bases = ", ".join(b.__name__ for b in obj.__bases__ if b is not object)
        return f"class {leaf}({bases}): ...  # then its methods" if bases else f"class {leaf}: ...  # then its methods"
    if callable(obj):
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            doc = (getattr(obj, "__doc__", "") or "").strip().splitlines()
            hint = f"  # doc: {doc[0]}" if doc else ""
            self_ = "self, " if inspect.isclass(owner) else ""
            sig = f"({self_}*args: Any, **kwargs: Any)"
            return f"def {leaf}{sig} -> Any: ...{hint}   (give the real parameters and types)"
        prefix = "async def" if inspect.iscoroutinefunction(obj) else "def"
        return f"{prefix} {leaf}{sig}: ...   (annotate every parameter and the return type)"
    if isinstance(getattr(type(owner), leaf, None), property) or inspect.isgetsetdescriptor(
            getattr(owner, leaf, None) if owner is not None else None):
        return f"@property\n        def {leaf}(self) -> {type(obj).__name__}: ..."
    return f"{leaf}: {type(obj).__name__}"


def explain(output: str) -> list[str]:
    """Turn stubtest's findings into instructions naming the file and what to add."""
    advice = []
    for match in re.finditer(r"^error: (\S+) (.*)$", output, re.M):
        name, problem = match.group(1), match.group(2)
        parts = name.split(".")
        # the module is the longest importable prefix
        mod_end = 1
        for i in range(len(parts), 0, -1):
            try:
                importlib.import_module(".".join(parts[:i]))
                mod_end = i
                break
            except ImportError:
                continue
        module, inner = ".".join(parts[:mod_end]), parts[mod_end:]
        where = f"{_stub_file(module).relative_to(REPO)}" + (f", in class {'.'.join(inner[:-1])}" if len(inner) > 1 else "")
        if problem.startswith("is not present in stub"):
            try:
                what = _suggest(name)
            except Exception as exc:  # the object may not even be importable
                what = f"{inner[-1] if inner else name}: ...  ({exc})"
            advice.append(f"- {name} is new at runtime: add to {where}:\n        {what}\n"
                          f"  or, if it must stay unchecked, a line `{name}  # why` in "
                          f"{ALLOWLIST.relative_to(REPO)}")
        elif problem.startswith("is not present at runtime"):
            advice.append(f"- {name} is gone at runtime: remove it from {where}")
        elif "unused allowlist entry" in match.group(0) or name == "unused":
            advice.append(f"- {match.group(0)}: delete that line from {ALLOWLIST.relative_to(REPO)}")
        else:
            advice.append(f"- {name} {problem}: fix its declaration in {where}")
    for match in re.finditer(r"^note: unused allowlist entry (\S+)", output, re.M):
        advice.append(f"- allowlist entry {match.group(1)} matches nothing any more: delete it from "
                      f"{ALLOWLIST.relative_to(REPO)}")
    return advice


def run_stubtest() -> bool:
    allowlist_entries()  # every entry must carry a reason
    cmd = [sys.executable, "-m", "mypy.stubtest", "uvcore", "--allowlist", str(ALLOWLIST)]
    proc = subprocess.run(cmd, cwd=REPO / "python", capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        print("stubtest:", out.strip().splitlines()[-1] if out.strip() else "ok")
        return True
    print(out)
    advice = explain(out)
    print("stubtest failed: the stubs in python/uvcore/*.pyi no longer describe the built module.")
    if advice:
        print("What to change:")
        print("\n".join(advice))
    return False


EXCERPT = re.compile(r"<!-- excerpt: (\S+) -->")


def _joined(lines: list[str]) -> str:
    """The code of `lines` without indentation, blank lines and comments."""
    code = (re.sub(r"\s+#.*$", "", line).strip() for line in lines)
    return "\n".join(line for line in code if line and not line.startswith("#"))


def readme_snippets(dest: Path) -> tuple[list[Path], list[str]]:
    """Each ```python block of README.md as its own module readme_L<line>.py, and the
    problems found with excerpts: a block right after `<!-- excerpt: path -->` is a piece of
    that file (checked there with the examples), so it must still be found in it."""
    files, problems = [], []
    lines = (REPO / "README.md").read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            j = start
            while lines[j].strip() != "```":
                j += 1
            excerpt = EXCERPT.fullmatch(lines[i - 1].strip()) if i else None
            if excerpt:
                source = REPO / excerpt.group(1)
                if not source.exists() or _joined(lines[start:j]) not in _joined(source.read_text().splitlines()):
                    problems.append(f"README.md line {start + 1}: the excerpt is no longer in {excerpt.group(1)}; "
                                    "copy the current code into the README")
            else:
                path = dest / f"readme_L{start + 1}.py"
                path.write_text("\n".join(lines[start:j]) + "\n")
                files.append(path)
            i = j
        i += 1
    return files, problems


def run_mypy_strict() -> bool:
    ok = True
    with tempfile.TemporaryDirectory(prefix="uvcore-readme-") as tmp:
        snippets, problems = readme_snippets(Path(tmp))
        for problem in problems:
            print(problem)
            ok = False
        env = dict(os.environ, MYPY_FORCE_COLOR="0")
        for label, targets, cwd in (("examples/", ["examples"], REPO),
                                    (f"README.md ({len(snippets)} python blocks)", [str(p) for p in snippets], tmp)):
            proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                                   "--cache-dir", os.path.join(tmp, ".mypy_cache"), *targets],
                                  cwd=cwd, capture_output=True, text=True, env=env)
            last = (proc.stdout.strip().splitlines() or ["?"])[-1]
            print(f"mypy --strict {label}: {last}")
            if proc.returncode != 0:
                print(proc.stdout.replace(tmp + "/", "README.md block at "), proc.stderr)
                ok = False
    return ok


def main() -> int:
    ok = run_stubtest()
    ok = run_mypy_strict() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
