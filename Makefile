# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0

.PHONY: install demo test lint bench clean

$(BIN)/rlfm: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The pinned CPU build first: a bare `torch` would pull several GB of CUDA packages.
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/rlfm

install: $(BIN)/rlfm

demo: install
	$(BIN)/rlfm demo --out results/demo --overwrite

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
