# Everything runs inside ./.venv, created on first use; only `python3` is needed beforehand.
#   make demo       install the package and run the engine's gradient self-check (`tx gradcheck`)
#   make test       install with test extras and run the whole test suite (2 xdist workers)
#   make test-fast  the same, skipping tests marked slow
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test test-fast test-gpu clean FORCE

demo: $(VENV)/.installed
	$(BIN)/tx gradcheck

# Two xdist workers on two cores: one BLAS thread each, or OpenBLAS's spinning threads contend
# and small matmuls get several times slower.
test: $(VENV)/.installed-test
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2

# The GPU half of the suite (CuPy backend): needs a CUDA device and `pip install -e '.[gpu-cuda12]'`
# (or gpu-cuda13) in the venv; without them every gpu test reports skipped.
test-gpu: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m gpu -rs

test-fast: $(VENV)/.installed-test
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 -m "not slow"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: reinstall only when pyproject.toml changes, the set of top-level packages
# changes (an editable install maps only the packages that existed when it ran, so a new
# package such as transformer/ needs one), or the venv is recreated.
$(VENV)/.installed: pyproject.toml $(VENV)/.packages
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.packages
	$(PIP) -e '.[test]'
	@touch $@ $(VENV)/.installed

# Rewritten (new mtime) only when the list of */__init__.py differs from last time.
PACKAGES := $(sort $(wildcard */__init__.py))
$(VENV)/.packages: FORCE | $(BIN)/python
	@echo '$(PACKAGES)' | cmp -s - $@ || echo '$(PACKAGES)' > $@

FORCE:

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
