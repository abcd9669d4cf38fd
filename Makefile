# Operate sbx with make.  Everything runs from the virtual environment in .venv/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SBX    := $(BIN)/sbx
PYTEST_ARGS ?=

.PHONY: help host host-test install images test test-unit test-integration test-swarm check lint imports format typecheck gc demo bench doctor clean compose-image up down eval

help:
	@echo "make host      install the Debian packages sbx needs and start the engine (as root)"
	@echo "make install   create .venv and install sbx (→ .venv/bin/sbx)"
	@echo "make images    build the sandbox images that are missing or stale"
	@echo "make demo      build what is missing, run sandboxed jobs in parallel, print results"
	@echo "make test      unit + integration tests (real Docker, real images)"
	@echo "make test-swarm  the backend conformance suite and failure tests on a 3-node swarm (root)"
	@echo "make check     ruff + mypy + import contracts + unit tests"
	@echo "make bench     our call path against docker exec / docker run"
	@echo "make eval      run an evaluation suite: make eval SUITE=examples/evals/smoke.yaml [EVAL_ARGS=...]"
	@echo "make doctor    check the engine, the images and a sandbox start"
	@echo "make gc        remove sandboxes left behind by dead supervisors"
	@echo "make up        run the HTTP API with docker compose (needs SBX_TOKEN); make down stops it"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,inspect]'
	@touch $@

# Byte-compiled up front: an editable install has no .pyc of its own, and where
# PYTHONDONTWRITEBYTECODE is set every `sbx run` would compile ~100 modules (0.15 s).
install: $(VENV)/.installed
	@$(BIN)/python -m compileall -q -j0 orchestrator >/dev/null

# The machine itself: docker.io, mmdebstrap (and chromium for the tests) installed and the
# engine started when we are root; otherwise the exact packages and commands are named.
host:
	@sandbox-images/setup-host

host-test:
	@sandbox-images/setup-host --test

images: host install
	$(SBX) images build

test: host-test images
	$(BIN)/pytest $(PYTEST_ARGS) tests

test-unit: install
	@sandbox-images/setup-host --browser
	$(BIN)/pytest -m "not soak" $(PYTEST_ARGS) tests/unit

test-integration: host-test images
	$(BIN)/pytest $(PYTEST_ARGS) tests/integration

# Three dockerds in network namespaces of their own, joined into a swarm; torn down after.
test-swarm: images
	PYTHON=$(BIN)/python PYTEST_ARGS="$(PYTEST_ARGS)" tests/swarm/run.sh

lint: install
	$(BIN)/ruff check orchestrator sandbox-images tests
	$(BIN)/ruff format --check orchestrator sandbox-images tests

format: install
	$(BIN)/ruff format orchestrator sandbox-images tests
	$(BIN)/ruff check --fix orchestrator sandbox-images tests

typecheck: install
	$(BIN)/mypy

# The architecture's layer order (contracts in pyproject.toml).
imports: install
	$(BIN)/lint-imports --no-cache

check: lint typecheck imports test-unit

gc: install
	$(SBX) gc

demo: images
	$(SBX) demo

bench: images
	$(SBX) bench

SUITE ?= examples/evals/smoke.yaml
EVAL_ARGS ?=

# Exit status as sbx eval's: 0 all passed, 1 some did not, 2 a suite that does not load.
eval: images
	$(SBX) eval $(SUITE) $(EVAL_ARGS)

doctor: install
	$(SBX) doctor

COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_FILE := compose/docker-compose.yml

# The server image's Python packages are installed here, on the host, for the image's
# Python (3.11, x86_64): a fresh Debian root may not trust the CA that PyPI access needs.
compose-image: images
	rm -rf compose/build && mkdir -p compose/build/wheels
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir compose/build/wheels .
	$(BIN)/pip install --quiet --target compose/build/site --python-version 3.11 \
		--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --only-binary=:all: \
		compose/build/wheels/*.whl
	docker build --quiet --tag sbx-server:latest compose

SBX_PUBLISH ?= 127.0.0.1:8765

# The token is checked first: nothing is built for a server that could not start.
up:
	@[ -n "$$SBX_TOKEN" ] || { echo "make up needs SBX_TOKEN, the API token clients will use:" \
		"export SBX_TOKEN=\$$(openssl rand -hex 24)" >&2; exit 2; }
	$(MAKE) compose-image
	$(COMPOSE) -f $(COMPOSE_FILE) up -d
	@for i in $$(seq 1 60); do \
		curl -fsS -o /dev/null http://$(SBX_PUBLISH)/healthz && \
		echo "sbx is up on http://$(SBX_PUBLISH) (clients use \$$SBX_TOKEN)" && exit 0; \
		sleep 1; \
	done; echo "sbx did not become healthy; see: $(COMPOSE) -f $(COMPOSE_FILE) logs" >&2; exit 1

# Stopping needs no token (the compose file requires one to be set, not a particular one).
down:
	SBX_TOKEN=$${SBX_TOKEN:-unused} $(COMPOSE) -f $(COMPOSE_FILE) down --timeout 45

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache compose/build
