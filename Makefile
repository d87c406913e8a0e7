# Two commands on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench asyncapi clean install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: the whole system in one process on embedded defaults (console on http://127.0.0.1:8000)
run: $(STAMP)
	$(BIN)/prevent up

## test: lint, then the whole suite (PostgreSQL tests run when PREVENT_TEST_DATABASE_URL is set)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/prevent playbooks check
	$(BIN)/prevent playbooks test
	$(BIN)/pytest -q -rs $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

asyncapi: $(STAMP)
	$(BIN)/prevent asyncapi --output docs/asyncapi.json

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache tests/artifacts

## bench: every benchmark in one run; writes docs/PERFORMANCE.md and var/bench/*.json
bench: $(STAMP)
	$(BIN)/python -m bench
