# Two commands: `make demo` and `make test`. Both create .venv from the lock when it is missing or stale.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements.lock
# The extras `make` installs; `make lock` resolves the same set (a test checks the lock covers them).
EXTRAS ?= dev,data,bench,train,ray,dnsmos,serve
QUIET_PIP := 2>&1 | { grep -v "is ignored" || true; }

.PHONY: demo test install lock clean

$(VENV)/.installed: $(LOCK) pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "pip==26.3" $(QUIET_PIP)
	# Every package at the lock's version; torch==2.13.0 there takes the CPU build on this machine
	# (a bare `torch` requirement would pull a multi-GB CUDA build).
	$(PY) -m pip install -q -r $(LOCK) $(QUIET_PIP)
	# Soul itself without dependencies: nothing beyond the lock is resolved.
	$(PY) -m pip install -q --no-deps -e . $(QUIET_PIP)
	$(PY) -c "import soul, torch; assert torch.__version__.startswith('2.13.0') and torch.version.cuda is None, torch.__version__"
	touch $@

install: $(VENV)/.installed

lock: install
	$(PY) scripts/lock.py $(EXTRAS)

test: install
	$(VENV)/bin/lint-imports --no-cache  # the package graph (contracts in pyproject.toml, docs/CONTRACTS.md)
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/soul demo

clean:
	rm -rf $(VENV) build .pytest_cache
