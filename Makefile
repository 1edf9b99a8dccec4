# Two commands on a fresh machine: `make demo` (export -> run -> parity -> benchmark on the
# shipped danet_demo model) and `make test`. Both create/use the local venv in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo lint typecheck test test-slow test-ros test-tensorrt check-tensorrt-api check-runtime-wheel docs install clean

# $(call make-venv,FOLDER,EXTRAS): a venv with the pinned CPU torch first, then this checkout (editable)
define make-venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
	$(1)/bin/python -m pip install -q torch==2.13.0
	$(1)/bin/python -m pip install -q torch==2.13.0 -e '.[$(2)]'
	touch $(1)/.installed
endef

EXTRAS := all-cpu,tensorrt-prepare,test,serve,lint
$(STAMP): pyproject.toml
	$(call make-venv,$(VENV),$(EXTRAS))

install: $(STAMP)

# runs/demo is this target's own folder: each run replaces the previous run's results there
demo: $(STAMP)
	$(VENV)/bin/danet-demo --output runs/demo --force

# make lint: ruff check and ruff format --check over the whole checkout ([tool.ruff] in pyproject);
# `ruff format .` applies the layout
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# make typecheck: mypy over danet_deploy ([tool.mypy] in pyproject); run by .ci/run after make lint
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# make test: the everyday suite (<= 5 min on 2 quiet cores); make test-slow: the tests marked slow
# (over ~5 s each). .ci/run runs both.
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not tensorrt" tests

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow" tests

# The robot's install: build the wheel, install danet-deploy[onnxruntime] (no torch) into a fresh
# venv and run an artifact exported here (scripts/check_runtime_wheel.sh; .ci/run runs it too)
check-runtime-wheel: $(STAMP)
	scripts/check_runtime_wheel.sh $(PY)

# The documentation site (mkdocs.yml, docs/): built with --strict, so a broken link or a missing
# page fails; the docs extra is installed on first use (not by `make install`)
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# ROS 2 package tests (colcon build, the node started in a private network namespace): CPython 3.11
# (the ros-* wheels) and root (unshare -n). Their own venv: colcon-core pins setuptools<80 while
# nvidia-modelopt (tensorrt-prepare, in .venv) needs >=80, so the two cannot share one.
ROS_VENV ?= .venv-ros
ROS_PY := $(ROS_VENV)/bin/python
ROS_STAMP := $(ROS_VENV)/.installed
ROS_TESTS := tests/test_ros_node.py tests/test_ros_pipeline.py tests/test_ros_images.py tests/test_bag_replay.py

ROS_EXTRAS := export,ros,test
$(ROS_STAMP): pyproject.toml
	$(call make-venv,$(ROS_VENV),$(ROS_EXTRAS))

test-ros: $(ROS_STAMP)
	$(ROS_PY) -m pytest -q -rs $(ROS_TESTS)

# On a machine with TensorRT, cuda-python and an NVIDIA GPU (x86 or Jetson), with the interpreter
# that has them and danet-deploy installed: make test-tensorrt PYTHON=python3
test-tensorrt:
	$(PYTHON) -m pytest -q -rs -m tensorrt tests

# TensorRT API drift check against the 10.x / 11.x bindings wheels (downloaded once into the cache)
TRT_WHEELS ?= $(HOME)/.cache/danet-deploy/tensorrt-wheels
check-tensorrt-api: $(STAMP)
	$(PY) -m pip download -q --no-deps -d $(TRT_WHEELS) tensorrt-cu12-bindings==10.16.1.11 tensorrt-cu13-bindings==11.4.0.106
	$(PY) scripts/check_tensorrt_api.py $(TRT_WHEELS)/tensorrt_cu1*_bindings-*.whl

clean:
	rm -rf $(VENV) $(ROS_VENV) runs site *.egg-info
