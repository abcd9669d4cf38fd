# Operate sbx with make.  Everything runs from the virtual environment in .venv/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SBX    := $(BIN)/sbx
PYTEST_ARGS ?=

.PHONY: help install images test test-unit test-integration check lint format typecheck gc demo bench doctor clean

help:
	@echo "make install   create .venv and install sbx (→ .venv/bin/sbx)"
	@echo "make images    build the sandbox images that are missing or stale"
	@echo "make demo      build what is missing, run sandboxed jobs in parallel, print results"
	@echo "make test      unit + integration tests (real Docker, real images)"
	@echo "make check     ruff + mypy + unit tests (seconds)"
	@echo "make bench     our call path against docker exec / docker run"
	@echo "make doctor    check the engine, the images and a sandbox start"
	@echo "make gc        remove sandboxes left behind by dead supervisors"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

images: install
	$(SBX) images build

test: images
	$(BIN)/pytest $(PYTEST_ARGS) tests

test-unit: install
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit

test-integration: images
	$(BIN)/pytest $(PYTEST_ARGS) tests/integration

lint: install
	$(BIN)/ruff check orchestrator sandbox-images tests
	$(BIN)/ruff format --check orchestrator sandbox-images tests

format: install
	$(BIN)/ruff format orchestrator sandbox-images tests
	$(BIN)/ruff check --fix orchestrator sandbox-images tests

typecheck: install
	$(BIN)/mypy

check: lint typecheck test-unit

gc: install
	$(SBX) gc

demo: images
	$(SBX) demo

bench: images
	$(SBX) bench

doctor: install
	$(SBX) doctor

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
