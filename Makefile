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

## test: lint, then the whole suite (PostgreSQL tests run when PREVENT_TEST_DATABASE_URL is set) in
## PYTEST_WORKERS processes (pytest-xdist): the end-to-end and fault tests in two of them, a group each
## (tests/conftest.py), the quick ones in the others; PYTEST_WORKERS=0 runs it in one process
PYTEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/prevent playbooks check
	$(BIN)/prevent playbooks test
	@started=$$(date +%s); $(BIN)/pytest -q -rs -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); \
	  status=$$?; echo "make test: pytest took $$(( $$(date +%s) - started )) s"; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

asyncapi: $(STAMP)
	$(BIN)/prevent asyncapi --output docs/asyncapi.json

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache tests/artifacts

## bench: every benchmark in one run; writes docs/PERFORMANCE.md and var/bench/*.json
bench: $(STAMP)
	$(BIN)/python -m bench

## fuzz: the fuzz tests of tests/fuzz for longer (FUZZ_SCALE x their examples, random inputs, failures
## kept in .hypothesis/), then atheris on each parser for FUZZ_SECONDS (where atheris is installed)
FUZZ_SCALE   ?= 20
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: $(STAMP)
	PREVENT_FUZZ_SCALE=$(FUZZ_SCALE) $(BIN)/pytest -q -rs -m fuzz --timeout=0 tests/fuzz $(PYTEST_ARGS)
	@if $(BIN)/python -c 'import atheris' 2>/dev/null; then \
	  mkdir -p var/fuzz; \
	  for target in $$($(BIN)/python tests/fuzz/atheris_main.py --list); do \
	    mkdir -p var/fuzz/corpus/$$target; \
	    echo "atheris: $$target for $(FUZZ_SECONDS) s"; \
	    $(BIN)/python tests/fuzz/atheris_main.py $$target -max_total_time=$(FUZZ_SECONDS) \
	      -artifact_prefix=var/fuzz/$$target- var/fuzz/corpus/$$target || exit 1; \
	  done; \
	else echo "atheris is not installed (Linux x86-64 only): coverage-guided runs skipped"; fi
