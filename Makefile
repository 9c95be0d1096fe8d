# Two commands for users: `make run` (start everything) and `make test` (run every test).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SYSTEM_PYTHON := /usr/bin/python3

.PHONY: run test system-deps system-deps-test venv venv-train viewer benchmark-figshare clean

run: system-deps venv viewer
	scripts/run.sh

test: system-deps-test venv-train viewer
	$(PY) -m pytest -ra $(PYTEST_ARGS)

system-deps:
	scripts/install-system.sh run

system-deps-test:
	scripts/install-system.sh test

# The plugin runtime venv, made with the system python3 (the ABI of Orthanc's embedded Python).
$(VENV)/.runtime-ok: pyproject.toml
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e '.[test]'
	touch $@

venv: $(VENV)/.runtime-ok

# Training extras (torch CPU, onnx, matplotlib, scikit-learn) on top of the runtime.
$(VENV)/.train-ok: $(VENV)/.runtime-ok
	$(PIP) install -q -e '.[train,test]'
	touch $@

venv-train: $(VENV)/.train-ok

viewer:
	$(MAKE) -C viewer-extension build

benchmark-figshare: venv-train
	$(VENV)/bin/cbmir benchmark --manifest ../shared/data/figshare-cheng/manifest.csv --out docs/benchmarks

clean:
	rm -rf $(VENV) build
	$(MAKE) -C viewer-extension clean
