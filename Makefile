# `make demo`, `make test` and `make docs` set everything up on a fresh machine: they create .venv
# and install the project with its extras the first time, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,umap,scale,geo,embed,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kmi run digits --out demo-results --force

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest -q

# The site, into docs/_build/html; every warning is an error (all of them listed, --keep-going).
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html -d docs/_build/doctrees docs docs/_build/html

clean:
	rm -rf $(VENV) demo-results results .pytest_cache .ruff_cache docs/_build docs/reference/api docs/examples
