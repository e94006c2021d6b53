# One command per job. Everything the tests need is installed into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# ESP32 MicroPython stubs replace the standard library, so they get a folder of their own.
STUBS := $(VENV)/micropython-stubs
MPY_SOURCES := firmware hardware/virtual tests/firmware bench/firmware_sign_board.py

.PHONY: test lint typecheck demo bench venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

$(STUBS)/.installed: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --target $(STUBS) 'micropython-esp32-stubs==1.29.*'
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) $(STUBS)/.installed
	$(BIN)/mypy
	MYPYPATH=$(STUBS) $(BIN)/mypy --config-file firmware/mypy.ini --custom-typeshed-dir $(STUBS) $(MPY_SOURCES)

test: lint typecheck
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/wattproof demo

bench: $(STAMP)
	$(BIN)/python bench/firmware_sign.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/proofs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
