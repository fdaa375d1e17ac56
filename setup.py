"""Build uvcore._uvcore, the C core, against the system libuv (pkg-config libuv).

Environment switches:
  UVCORE_DEV=1   -Wall -Wextra -Werror (the dev build used by `make test`)
  UVCORE_ASAN=1  AddressSanitizer + UBSan (used by `make asan`)
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup


def pkg_config(*args):
    if shutil.which("pkg-config") is None:
        sys.exit("uvcore: pkg-config is missing; install it with: apt-get install -y pkg-config libuv1-dev")
    proc = subprocess.run(["pkg-config", *args, "libuv"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(
            "uvcore: libuv was not found by pkg-config; install it with: apt-get install -y libuv1-dev\n"
            + proc.stderr
        )
    return proc.stdout.split()


cflags = pkg_config("--cflags")
libs = pkg_config("--libs")
extra_compile = ["-std=c11", "-O2", "-fno-strict-aliasing"] + cflags
extra_link = list(libs)
if os.environ.get("UVCORE_DEV"):
    extra_compile += ["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
                      "-Wno-missing-field-initializers", "-Wno-cast-function-type"]
if os.environ.get("UVCORE_ASAN"):
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    extra_compile = [f for f in extra_compile if f != "-O2"] + ["-O1", "-g"] + san
    extra_link += san

setup(
    ext_modules=[
        Extension(
            "uvcore._uvcore",
            sources=sorted(glob.glob("csrc/*.c")),
            depends=glob.glob("csrc/*.h"),
            extra_compile_args=extra_compile,
            extra_link_args=extra_link,
        )
    ],
)
