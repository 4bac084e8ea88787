# The two set-up commands are `make demo` and `make test`; each creates its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLI := $(BIN)/reporting-proxy
DEMO_DIR ?= var/demo
DEMO_SESSIONS ?= 300000
DEMO_PORT ?= 8080

.PHONY: install demo test soak unit integration druid-up druid-down postgres-up postgres-down lint bench clean

# nginx (the front server of `reporting-proxy serve`) comes from the system's packages: the
# script installs it when absent, and stops with what to do when that needs root.
$(BIN)/.installed: pyproject.toml scripts/system-packages.sh
	scripts/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# Zero-infrastructure demo on the embedded engine: generate, load, register, print a curl, serve.
demo: install
	PROXY_DATA_DIR=$(DEMO_DIR) DEMO_SESSIONS=$(DEMO_SESSIONS) DEMO_PORT=$(DEMO_PORT) \
		$(BIN)/python -m proxyctl.demo

# Everything, the real-Druid integration suite included: Druid and PostgreSQL are started when not running.
test: install druid-up postgres-up
	$(BIN)/pytest tests -m "not soak" --junitxml=var/junit.xml

# The slow promises: fuzzing, faults against a second local Druid, load. CI runs it too.
soak: install druid-up postgres-up
	$(BIN)/pytest tests -m soak --junitxml=var/junit-soak.xml

unit: install
	$(BIN)/pytest tests/unit -m "not soak"

integration: install druid-up
	$(BIN)/pytest tests/integration -m integration

druid-up: install
	$(CLI) druid up

druid-down: install
	$(CLI) druid down

# The shared access store's database (and the multi-host tests'): the system's PostgreSQL 15.
postgres-up: install
	$(CLI) postgres up

postgres-down: install
	$(CLI) postgres down

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install druid-up postgres-up
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var build *.egg-info
