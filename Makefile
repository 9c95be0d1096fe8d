# Two commands for users: `make run` (start everything) and `make test` (run every test).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SYSTEM_PYTHON := /usr/bin/python3

.PHONY: run cluster system-deps-cluster test docs-screenshot model-reference bench system-deps system-deps-test venv venv-tools venv-train viewer benchmark-figshare clean

run: system-deps venv-tools viewer
	scripts/run.sh

# Several Orthanc nodes on one private PostgreSQL (docs/cluster.md); foreground, Ctrl-C stops all.
cluster: system-deps-cluster venv-tools viewer
	scripts/cluster.sh

test: system-deps-test venv-train viewer
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# Refresh the README's screenshot (docs/images/similar-cases-panel.png) with the viewer's end-to-end
# test; `make test` writes its screenshot to the git-ignored tests/artifacts/ instead.
docs-screenshot: system-deps-test venv-train viewer
	CBMIR_SCREENSHOT=$(CURDIR)/docs/images/similar-cases-panel.png $(PY) -m pytest -ra tests/viewer/test_viewer_e2e.py

system-deps:
	scripts/install-system.sh run

system-deps-test:
	scripts/install-system.sh test

system-deps-cluster:
	scripts/install-system.sh cluster

# The plugin runtime venv, made with the system python3 (the ABI of Orthanc's embedded Python):
# only what the plugin imports (pyproject's `dependencies`).
$(VENV)/.runtime-ok: pyproject.toml
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e .
	touch $@

venv: $(VENV)/.runtime-ok

# The offline tools (`cbmir import|demo|embed|verify`) on top of the runtime; `make run` adds them
# so that .venv/bin/cbmir works beside the running Orthanc.
$(VENV)/.tools-ok: $(VENV)/.runtime-ok
	$(PIP) install -q -e '.[tools]'
	touch $@

venv-tools: $(VENV)/.tools-ok

# Record the shipped model's vectors for the reference images (models/default.reference.json,
# checked by tests/unit/test_default_model.py): run it and commit the file with every new model.
model-reference: venv
	PYTHONPATH=plugin:tests $(PY) -m support.model_reference --write

# Training extras (torch CPU, onnx, matplotlib, scikit-learn) on top of the runtime.
$(VENV)/.train-ok: $(VENV)/.tools-ok
	$(PIP) install -q -e '.[tools,train,test]'
	touch $@

venv-train: $(VENV)/.train-ok

viewer:
	$(MAKE) -C viewer-extension build

# Retrieval benchmark on the public figshare set (5 folds + the shipped default model); resumable.
# MANIFEST=path/to/manifest.csv for data elsewhere (default ../shared/data/figshare-cheng/manifest.csv).
benchmark-figshare: venv-train
	export/run-benchmark.sh

# PACS benchmarks (issue figures in docs/benchmarks/): about 30 minutes on 2 cores.
# Benchmarks share the tests' Orthanc launcher and DICOM builders (tests/): on the path, not in code.
BENCH := PYTHONPATH=plugin:export:tests $(PY)
bench: system-deps-test venv-train
	$(BENCH) bench/store_overhead.py --images 600 --block 10
	$(BENCH) bench/store_overhead.py --images 600 --block 100 --cstore-single 10 --name store-overhead-block100
	$(BENCH) bench/store_overhead.py --images 600 --block 100 --cstore-single 10 --index-delay 5 --name store-overhead-block100-delay5
	$(BENCH) bench/store_overhead.py --images 600 --block 10 --control --name store-overhead-control
	$(BENCH) bench/indexing.py
	$(BENCH) bench/query.py --sizes 16000,100000,1000000 --rest 16000
	$(BENCH) bench/load.py --seconds 60
	$(BENCH) bench/crash.py --images 500 --kills 3
	$(BENCH) bench/cluster.py --nodes 1,2,3 --images 300

clean:
	rm -rf $(VENV) build
	$(MAKE) -C viewer-extension clean
