# `make demo` and `make test` set everything up on a fresh machine: they create .venv and install
# the project with its extras the first time, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,umap,scale,geo,embed]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kmi run digits --out demo-results --force

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-results results .pytest_cache .ruff_cache
