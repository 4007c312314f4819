# Two commands on a fresh machine: `make run` and `make test`. Both install into .venv when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE := data/sample/items.pkl

# Offline-friendly defaults: no Prefect telemetry; tiktoken's encoding from the shared cache when present.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export TIKTOKEN_CACHE_DIR ?= $(abspath ../shared/tiktoken-cache)

.PHONY: run test lint bench sample clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "ftprep needs Python 3.11: set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(SAMPLE): $(STAMP) scripts/sample.py scripts/sample_vocab.json
	$(BIN)/python scripts/sample.py --n 600 --seed 42 --out $(SAMPLE)

sample: $(SAMPLE)

run: $(SAMPLE)
	$(BIN)/ftprep prepare --data $(SAMPLE) --out out

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/format_bench.py

clean:
	rm -rf out data/sample bench/out .pytest_cache
