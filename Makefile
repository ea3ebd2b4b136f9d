# Two entry points for a fresh machine: `make demo` and `make test` (and `make bench`, the benchmark suite).
# Both create .venv and install agf into it first (only when pyproject.toml or constraints.txt changed), with
# the tested versions of constraints.txt (pyproject.toml's requirements are ranges).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: demo test install bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	rm -rf src/agf.egg-info && $(BIN)/python -m pip uninstall -qq -y agf  # this project under its old name
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/agf demo -w demo

# One BLAS/OpenMP/torch thread per test process: $(JOBS) processes share the cores (2 threads each on a
# busy core made torch steps 20x slower here).
test: $(STAMP)
	bash scripts/test-setup.sh
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) -q

# The benchmark suite, apart from the tests (15.3 minutes on 2 quiet cores, 2026-12-05, before its long-file predict
# rows were added): writes benchmarks/results.json and the
# table of docs/benchmarks.md. One BLAS/OpenMP thread per process; the suite sets torch's threads per measurement.
bench: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python benchmarks/suite.py

clean-venv:
	rm -rf $(VENV)
