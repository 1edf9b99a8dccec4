# Two commands on a fresh machine: `make demo` (export -> run -> parity -> benchmark on the
# shipped danet_demo model) and `make test`. Both create/use the local venv in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q torch==2.13.0 -e '.[all-cpu,tensorrt-prepare,test,serve]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/danet-demo --output runs/demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not tensorrt" tests

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow" tests

clean:
	rm -rf $(VENV) runs *.egg-info
