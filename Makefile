# Two commands on a fresh machine: `make run` and `make test`. Both install into $(VENV) when needed, from the lock.
# Another interpreter gets its own venv: `make test PYTHON=python3.13 VENV=.venv313`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# One lock for every supported Python (3.11-3.13), resolved by uv; regenerate with `make lock`.
LOCK := requirements/lock.txt
UV_VERSION := 0.13.9
UV := $(BIN)/uv
SAMPLE := data/sample/items.pkl
# `make test` runs pytest on this many worker processes (pytest-xdist): 3 measured fastest on 2 cores (README);
# most tests wait on servers and processes, so more workers than cores pay off. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3

# The interpreter's "major.minor", or a message saying why it cannot be used (checked in the recipes).
PYVER := $(shell $(PYTHON) -c 'import sys; v = sys.version_info[:2]; print("%d.%d" % v if (3, 11) <= v <= (3, 13) else "unsupported-%d.%d" % v)' 2>/dev/null || echo missing)
# The stamp names the interpreter's version, so a venv made by another Python is rebuilt, not silently reused.
STAMP := $(VENV)/.installed-$(PYVER)

# Offline-friendly defaults: no Prefect telemetry; tiktoken's encoding from the shared cache when present.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export TIKTOKEN_CACHE_DIR ?= $(abspath ../shared/tiktoken-cache)
# uv: trust the system's CA store (as pip does here); copy rather than hard-link when its cache is on another disk.
export UV_NATIVE_TLS ?= 1
export UV_LINK_MODE ?= copy
# compile every package's bytecode at install: this machine sets PYTHONDONTWRITEBYTECODE=1, so a venv without .pyc
# files compiles Prefect from source in every process (about 1 s of CPU each: each run, server and worker)
export UV_COMPILE_BYTECODE ?= 1

.PHONY: run test lint bench sample clean lock lock-upgrade check-python

check-python:
	@case "$(PYVER)" in 3.1[1-3]) ;; \
	  missing) echo "ftprep: no Python at PYTHON='$(PYTHON)': set PYTHON=/path/to/python3.11 (or 3.12, 3.13)" >&2; exit 1;; \
	  *) echo "ftprep needs Python 3.11, 3.12 or 3.13; PYTHON='$(PYTHON)' is $(subst unsupported-,,$(PYVER)): set PYTHON=/path/to/python3.11 (or 3.12, 3.13)" >&2; exit 1;; \
	esac

# The venv with uv in it (uv from PyPI, pinned). A venv left by another interpreter is replaced.
define venv-with-uv
@$(MAKE) --no-print-directory check-python
@if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYVER)" ]; then \
  echo "$(VENV) was made by another Python; recreating it with $(PYVER)"; rm -rf $(VENV); fi
@[ -x $(BIN)/python ] || { echo "$(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); }
@$(UV) --version 2>/dev/null | grep -q '^uv $(UV_VERSION)' || \
  { echo "pip install uv==$(UV_VERSION)"; $(BIN)/pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'; }
endef

# Exactly the locked versions (sync removes anything else), then this project itself, editable, without
# re-resolving; `uv pip check` then fails if pyproject.toml asks for something the lock lacks.
$(STAMP): pyproject.toml $(LOCK)
	$(venv-with-uv)
	@rm -f $(VENV)/.installed-*
	$(UV) pip sync --quiet --python $(BIN)/python $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@$(UV) pip check --quiet --python $(BIN)/python || \
	  { echo "ftprep: $(LOCK) does not satisfy pyproject.toml: run 'make lock' and commit the lock" >&2; exit 1; }
	@touch $(STAMP)

# Re-resolve pyproject.toml into the lock (one file for Python 3.11-3.13 on any platform), keeping the versions
# already locked where they still fit; `make lock-upgrade` moves everything to the newest allowed versions.
LOCK_CMD = $(UV) pip compile --quiet --universal --python-version 3.11 pyproject.toml --extra dev -o $(LOCK)
lock:
	$(venv-with-uv)
	$(LOCK_CMD)

lock-upgrade:
	$(venv-with-uv)
	$(LOCK_CMD) --upgrade

# ftprep's own modules compiled to bytecode, again whenever one changes: under PYTHONDONTWRITEBYTECODE an editable
# install's modules are otherwise compiled from source by every process (0.1-0.2 s of CPU per command here)
COMPILED := $(VENV)/.compiled
$(COMPILED): $(STAMP) $(wildcard cli/*.py flows/*.py tasks/*.py ftprep/*.py)
	@$(BIN)/python -m compileall -q cli flows tasks ftprep
	@touch $@

$(SAMPLE): $(STAMP) scripts/sample.py scripts/sample_vocab.json
	$(BIN)/python scripts/sample.py --n 600 --seed 42 --out $(SAMPLE)

sample: $(SAMPLE)

run: $(SAMPLE) $(COMPILED)
	$(BIN)/ftprep prepare --data $(SAMPLE) --out out

test: $(COMPILED)
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(COMPILED)
	$(BIN)/python bench/format_bench.py

clean:
	rm -rf out data/sample bench/out .pytest_cache
