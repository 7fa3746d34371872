# mptcpsec: `make demo` and `make test` each work from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install build test demo bench lint check-prereqs clean sanitize fuzz tamper-full soak

# A new virtual environment whenever none exists.
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel cffi

check-prereqs:
	@command -v cc >/dev/null 2>&1 || { echo "error: no C compiler; install one (Debian: apt-get install build-essential)" >&2; exit 1; }
	@printf '#include <openssl/evp.h>\nint main(void){return 0;}\n' | cc -x c - -o /dev/null -lcrypto 2>/dev/null || { \
		echo "error: OpenSSL 3 development files are missing; install them (Debian: apt-get install libssl-dev)" >&2; exit 1; }

$(STAMP): $(PY) setup.py pyproject.toml csrc/build_core.py csrc/mptcpsec_core.c csrc/mptcpsec_core.h | check-prereqs
	$(PIP) install --quiet -e '.[test,bench]'
	@touch $@

install: $(STAMP)

# Rebuild the C core in place (after editing csrc/).
build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/mptcpsec demo

# Full-size runs of every benchmark; tables on stdout, JSON and PNG files in $(BENCH_OUT)
# (`make bench BENCH_OUT=papers/figures` refreshes the figures of papers/EXPERIMENTS.md).
BENCH_OUT ?= out/bench
bench: $(STAMP)
	$(VENV)/bin/mptcpsec bench crypto
	$(VENV)/bin/mptcpsec bench transfer --out $(BENCH_OUT)
	$(VENV)/bin/mptcpsec bench failover --out $(BENCH_OUT)
	$(VENV)/bin/mptcpsec bench handshake --out $(BENCH_OUT)
	$(VENV)/bin/mptcpsec bench scale --out $(BENCH_OUT)
	$(PY) -m pytest bench -q --benchmark-only

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m mypy

clean:
	rm -rf build *.egg-info mptcpsec/_core*.so mptcpsec/_core.c .pytest_cache .benchmarks

# The C core under AddressSanitizer and UndefinedBehaviorSanitizer, on the crypto and wire tests.
sanitize: $(STAMP)
	PY=$(abspath $(PY)) ./csrc/sanitize.sh tests/crypto $(wildcard tests/wire) \
		tests/adversarial/test_tamper_matrix.py \
		tests/adversarial/test_fuzz_smoke.py::test_target_on_seeds_and_random_inputs

# The full tamper matrix: every AEAD algorithm on the sans-I/O bench, every field of every
# record class on real sockets (make test runs all cells once and a real-socket subset).
tamper-full: $(STAMP)
	MPTCPSEC_TAMPER_FULL=1 $(PY) -m pytest -q tests/adversarial/test_tamper_matrix.py \
		tests/adversarial/test_tamper_wire.py

# Coverage-guided fuzzing (atheris) of every target in fuzz/, FUZZ_SECONDS each.
FUZZ_SECONDS ?= 120
fuzz: $(STAMP)
	@$(PY) -c "import atheris" 2>/dev/null || $(PIP) install --quiet atheris
	$(PY) fuzz/run.py --seconds $(FUZZ_SECONDS)

# 100 connections x 2 paths for 60 s over paths that fail and come back; RSS over time.
soak: $(STAMP)
	$(PY) -m mptcpsec.lab.soak soak --connections 100 --duration 60
