# The two commands of the README: `make run` (the demo) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# without OPENAI_API_KEY / OPENAI_BASE_URL: installs (once) and serves the local model too;
# e.g. make run RUN_ARGS="--no-demo --booking 3"
run: install
	$(BIN)/python -m services.runner $(RUN_ARGS)

test: install
	$(BIN)/pytest -q -m "not local_model"

# the tests that drive the real local model (needs scripts/install_local_model.sh; minutes on 2 cores)
test-local-model: install
	bash scripts/install_local_model.sh
	$(BIN)/pytest -q -m local_model

lint: install
	$(BIN)/ruff check services shared tests bench
	$(BIN)/ruff format --check services shared tests bench
	$(BIN)/mypy

# run by hand, each prints a table (the local-model ones need scripts/install_local_model.sh)
bench: install
	for b in slot_engine calendar_roundtrip tool_hop booking_throughput; do $(BIN)/python -m bench.$$b || exit 1; done
