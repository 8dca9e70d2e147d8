# The two commands a person needs: `make run` and `make test`. Everything else is detail.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## run: create .venv, install, check the definitions, load demo users (empty instance only), serve on :5000
run: $(STAMP)
	$(BIN)/civicflow lint
	$(BIN)/civicflow demo
	$(BIN)/civicflow run --host $(HOST) --port $(PORT)

## test: install what the tests need and run every test
test: $(STAMP)
	$(BIN)/python -m pytest

## lint: check the shipped YAML definitions
lint: $(STAMP)
	$(BIN)/civicflow lint

## bench: store latency at 1k / 10k / 100k cases
bench: $(STAMP)
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
