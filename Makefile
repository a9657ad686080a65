# The two commands of the README: `make run` and `make test`. Each sets up everything it needs:
# the virtual environment, the services (ops/services.sh) and the database schema.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test services migrate lint bench locust clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "SentinelStream needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		echo "installing python3-venv"; apt-get update -qq && apt-get install -y -qq python3-venv; \
		$(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

services:
	@bash ops/services.sh

migrate: $(STAMP) services
	$(BIN)/sentinel migrate

# The edge, the outbox relay and the webhook and alert workers (ops/run.sh); Ctrl-C stops all.
run: migrate
	@BIN=$(BIN) bash ops/run.sh

test: $(STAMP) services
	$(BIN)/pytest -q --cov --cov-report=term --cov-fail-under=80

# The end-to-end benchmark: open-loop rates, the max-throughput search and the bare aiohttp
# ceiling in one run, against an edge it starts itself (docs/benchmarking.md). Options go in
# BENCH_ARGS, e.g. make bench BENCH_ARGS="--rates 100,500,1000,2000 --seconds 20".
BENCH_ARGS ?=
bench: migrate
	$(BIN)/python -m loadtest.bench $(BENCH_ARGS)

# Locust with a realistic mix against a running server (`make run` in another shell). Locust
# is the optional `load` extra: installed here, never by `make test`.
LOCUST_STAMP := $(VENV)/.locust-stamp
LOCUST_ARGS  ?= --headless -u 200 -r 50 -t 60s --host http://127.0.0.1:8080
$(LOCUST_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[load]'
	@touch $(LOCUST_STAMP)

locust: $(LOCUST_STAMP)
	@echo "Needs a server at the --host below (make run); options in LOCUST_ARGS."
	$(BIN)/locust -f loadtest/locustfile.py $(LOCUST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
