# The two commands a person needs: `make run` and `make test`. Everything else is detail.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 5000
CHROMIUM := /usr/bin/chromium
PG_BIN   := /usr/lib/postgresql/15/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test browser-deps postgres-deps office-deps lint bench bench-http bench-pg clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,postgres,bench]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## run: create .venv, install, check the definitions, load demo users (empty instance only), serve on :5000
## (the production server, waitress; `civicflow run` is Flask's development server, for development only)
run: $(STAMP)
	$(BIN)/civicflow lint
	$(BIN)/civicflow demo
	$(BIN)/civicflow serve --host $(HOST) --port $(PORT)

## test: install what the tests need and run every test (the store tests start their own PostgreSQL)
test: $(STAMP) browser-deps postgres-deps office-deps
	$(BIN)/python -m pytest

## postgres-deps: Debian's PostgreSQL server binaries for the store tests (tests/pg.py), via apt-get when missing
postgres-deps:
	@if [ ! -x $(PG_BIN)/initdb ] || [ ! -x $(PG_BIN)/pg_ctl ]; then \
	  echo "make: installing postgresql with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; \
	fi
	@test -x $(PG_BIN)/initdb || { echo "make: $(PG_BIN)/initdb is still missing; the store tests need PostgreSQL 15"; exit 1; }

## office-deps: LibreOffice Calc (headless) to open the exported CSV as a person would (tests/test_export_cells.py)
office-deps:
	@if ! command -v libreoffice >/dev/null; then \
	  echo "make: installing libreoffice-calc-nogui with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y libreoffice-calc-nogui; \
	fi
	@command -v libreoffice >/dev/null || { echo "make: libreoffice is still missing; tests/test_export_cells.py needs it"; exit 1; }

## browser-deps: Debian's Chromium and CJK fonts for tests/browser (Playwright drives them), via apt-get when missing
browser-deps:
	@if [ ! -x $(CHROMIUM) ] || ! dpkg-query -W -f='$${Status}' fonts-noto-cjk 2>/dev/null | grep -q 'ok installed'; then \
	  echo "make: installing chromium and fonts-noto-cjk with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-noto-cjk; \
	fi
	@test -x $(CHROMIUM) || { echo "make: $(CHROMIUM) is still missing; the browser tests need it"; exit 1; }

## lint: check the shipped YAML definitions
lint: $(STAMP)
	$(BIN)/civicflow lint

## bench: store latency at 1k / 10k / 100k cases
bench: $(STAMP)
	$(BIN)/python bench/store.py

## bench-http: pages under the production server next to a hello world, at SIZES cases (wrk via apt-get when missing)
SIZES ?= 1000 10000 100000
bench-http: $(STAMP)
	@command -v wrk >/dev/null || { echo "make: installing wrk with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; }
	$(BIN)/python bench/http.py --sizes $(SIZES)

## bench-pg: pages on PostgreSQL under gunicorn with 1, 2, 4 workers next to TinyDB, at PG_SIZES cases
PG_SIZES ?= 100000
bench-pg: $(STAMP) postgres-deps
	@command -v wrk >/dev/null || { echo "make: installing wrk with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; }
	$(BIN)/python bench/pg.py --sizes $(PG_SIZES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
