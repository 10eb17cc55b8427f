# The two commands of the README: `make run` (the demo) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test test-cluster lint bench

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# without OPENAI_API_KEY / OPENAI_BASE_URL: installs (once) and serves the local model too;
# e.g. make run RUN_ARGS="--no-demo --booking 3"
run: install
	$(BIN)/python -m devtools.runner $(RUN_ARGS)

# the whole suite; the real-local-model tests run when scripts/install_local_model.sh has run
# (CI runs it first), and skip with the reason otherwise
test: install
	$(BIN)/pytest -q

# the booking paths again on a private 3-master Redis Cluster with partitioned streams (a
# representative subset: the whole integration and e2e suites there take ~7 min on 2 cores; run
# them with REDIS_TEST_CLUSTER=1 $(BIN)/pytest -q tests/integration tests/e2e -m "not local_model")
CLUSTER_TESTS := tests/integration/test_booking_lifecycle.py tests/integration/test_booking_stream.py \
	tests/integration/test_calendar_stream.py tests/integration/test_deadlines.py \
	tests/integration/test_booking_events.py tests/e2e/test_booking_conversation.py \
	tests/e2e/test_server_driven.py tests/e2e/test_no_wrong_writes.py
test-cluster: install
	REDIS_TEST_CLUSTER=1 STREAM_PARTITIONS=3 $(BIN)/pytest -q -m "not local_model" $(CLUSTER_TESTS)

# only the tests that drive the real local model, installing it first (a minute or two warm)
test-local-model: install
	bash scripts/install_local_model.sh
	$(BIN)/pytest -q -m local_model

lint: install
	$(BIN)/ruff check services shared runtime devtools testkit tests bench conftest.py
	$(BIN)/ruff format --check services shared runtime devtools testkit tests bench conftest.py
	$(BIN)/mypy

# run by hand, each prints a table (the local-model ones need scripts/install_local_model.sh)
bench: install
	for b in slot_engine calendar_roundtrip tool_hop booking_throughput; do $(BIN)/python -m bench.$$b || exit 1; done
