"""The self-contained wheel: packaging/build_wheels.py builds the sdist and, from it, a
wheel for this Python with libuv grafted in by auditwheel; the wheel is installed into a
fresh virtualenv and tests/wheel_smoke.py runs there (loop, Queue, PubSub) in a mount
namespace where the system's libuv file is replaced by an empty one, so a process that
tried to load it would fail, and /proc/self/maps must show only the wheel's copy.
`make wheel` does the same build for every Python pyenv has from 3.9 to 3.13."""
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def system_libuv() -> Path:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"libuv\.so\.1 \(.*\) => (\S+)", out)
    assert match, "the system libuv1 (Debian libuv1) is not installed: make deps installs it"
    return Path(match.group(1)).resolve()


def hidden(cmd: list, lib: Path) -> list:
    """cmd run in a private mount namespace with /dev/null mounted over the system libuv."""
    unshare = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--mount"]
    script = 'mount --bind /dev/null "$0" && exec "$@"'
    return [*unshare, "sh", "-c", script, str(lib), *cmd]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, str(REPO / "packaging" / "build_wheels.py"), "--out", str(out)],
                          capture_output=True, text=True)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("uvcore-*.whl")
    assert (out / "uvcore-0.1.0.tar.gz").exists()
    return whl


def test_wheel_is_manylinux_tagged_and_carries_libuv(wheel):
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert re.fullmatch(rf"uvcore-0\.1\.0-{tag}-{tag}-manylinux_2_\d+_x86_64\.whl", wheel.name), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if re.fullmatch(r"uvcore\.libs/libuv-[0-9a-f]+\.so\.1(\.\d+)*", n)], names
    assert "uvcore/py.typed" in names and "uvcore/_uvcore.pyi" in names


def test_wheel_runs_in_a_fresh_venv_without_the_system_libuv(wheel, tmp_path):
    lib = system_libuv()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)], check=True)
    smoke = tmp_path / "smoke.py"
    shutil.copy(REPO / "tests" / "wheel_smoke.py", smoke)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}

    # The hiding works: with the system libuv blanked, loading it fails.
    probe = subprocess.run(hidden([str(py), "-c", f"import ctypes; ctypes.CDLL({str(lib)!r})"], lib),
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert probe.returncode != 0 and ("too short" in probe.stderr or "invalid ELF" in probe.stderr), probe.stderr

    proc = subprocess.run(hidden([str(py), str(smoke)], lib), capture_output=True, text=True, env=env, cwd=tmp_path)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok")
    assert str(venv) in proc.stdout  # uvcore and its libuv came from the venv

    # ldd agrees: the extension resolves libuv inside the wheel's uvcore.libs/
    (ext,) = (venv / "lib").glob("python3*/site-packages/uvcore/_uvcore*.so")
    ldd = subprocess.run(["ldd", str(ext)], capture_output=True, text=True, check=True).stdout
    uv = [line for line in ldd.splitlines() if "libuv" in line]
    assert uv and all("uvcore.libs/libuv-" in line for line in uv), ldd
