# Two commands: `make demo` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,data,bench,train,ray,dnsmos

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24" 2>&1 | { grep -v "is ignored" || true; }
	# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -m pip install -q "setuptools<81" wheel 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -m pip install -q -e ".[$(EXTRAS)]" 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -c "import soul, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/soul demo

clean:
	rm -rf $(VENV) build .pytest_cache
