# Two commands on a fresh machine:  make demo  |  make test
# Each creates .venv (Python 3.11 recommended) and installs the project with pip.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# absolute, so that the notebooks (working directory notebooks/) and the tests read the same folder
DATA ?= $(abspath $(if $(DDPM_DATA_ROOT),$(DDPM_DATA_ROOT),$(if $(wildcard ../shared/data/MNIST/raw),../shared/data,data)))

.PHONY: setup demo test test-lib test-notebooks lint format notebooks lab site bench clean

# the tested PyTorch (pyproject.toml only sets lower bounds); environment.yml pins the same versions
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# JupyterLab refuses to start as root without --allow-root (containers); extra arguments: make lab LAB_ARGS="--port 8899"
LAB_ARGS ?=
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup  ## start the Gradio demo on http://127.0.0.1:7860 with the shipped model
	$(PY) demo/app.py

test: setup  ## lint, library and demo tests, then the notebooks under nbval (fast mode)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DDPM_DATA_ROOT=$(DATA) $(PY) -m pytest tests
	DDPM_DATA_ROOT=$(DATA) DDPM_FAST=1 $(PY) -m pytest --nbval notebooks

test-lib: setup
	DDPM_DATA_ROOT=$(DATA) $(PY) -m pytest tests

test-notebooks: setup
	DDPM_DATA_ROOT=$(DATA) DDPM_FAST=1 $(PY) -m pytest --nbval notebooks

notebooks: setup  ## re-execute every notebook in place (normal mode) and strip stray metadata
	DDPM_DATA_ROOT=$(DATA) bash scripts/run_notebooks.sh

lab: setup  ## open the course notebooks in JupyterLab (MNIST from DDPM_DATA_ROOT)
	DDPM_DATA_ROOT=$(DATA) $(PY) -m jupyter lab $(ALLOW_ROOT) $(LAB_ARGS) notebooks/

site: setup  ## build the course website into site/_build/html (committed outputs, nothing executed)
	$(PY) -m sphinx -b html -c site -W --keep-going -q . site/_build/html
	@echo "open site/_build/html/index.html (or: $(PY) -m http.server -d site/_build/html 8000)"

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

bench: setup  ## training and sampling throughput of the default model on this machine
	$(PY) scripts/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site/_build
