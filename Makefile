# Everything runs inside ./.venv, created on first use; only `python3` is needed beforehand.
#   make demo       install the package, check every op's gradient, draw the attention graph, write
#                   the HTML backprop explorer, train a small GPT for about a minute and sample from
#                   it; everything goes to demo/ (under 2 minutes on 2 cores from a fresh clone)
#   make test       install with test extras and run the whole test suite (2 xdist workers)
#   make test-fast  the same, skipping tests marked slow
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test test-fast test-gpu clean FORCE

# The demo's GPT: 2 layers, 4 heads, C=64, 64-character context, 1200 steps of batch 16 on the
# shipped tinyshakespeare (about 55 s on one core; val loss from 4.18 to about 2.05). One BLAS
# thread: at these matrix sizes more threads only contend.
DEMO_GPT := --n-layer 2 --n-head 4 --n-embd 64 --block-size 64 --batch-size 16 --lr 2e-3 \
            --max-iters 1200 --eval-interval 300 --eval-iters 10 --seed 1337

demo: $(VENV)/.installed
	$(BIN)/tx gradcheck
	$(BIN)/tx graph attention --out demo/attention.svg
	$(BIN)/tx explore attention --out demo/backprop.html
	OPENBLAS_NUM_THREADS=1 $(BIN)/tx train --out demo/run --overwrite $(DEMO_GPT)
	@echo "--- a sample from the trained model:"
	OPENBLAS_NUM_THREADS=1 $(BIN)/tx sample --ckpt demo/run --prompt "ROMEO:" --max-new-tokens 300 --seed 1337
	@echo ""
	@echo "Open these:"
	@echo "  demo/attention.svg      one causal attention head after backward: every op, value and gradient"
	@echo "  demo/backprop.html      step through that backward pass in a browser (arrow keys, click a node)"
	@echo "  demo/run/metrics.jsonl  the training run's train/val loss (demo/run is the checkpoint for tx sample)"
	@echo "  docs/notebooks/backprop.ipynb  the backprop walkthrough as a notebook"
	@echo "More: $(BIN)/tx --help, docs/cli.md"

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
