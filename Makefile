# One command per job. Everything the tests need is installed into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# ESP32 MicroPython stubs replace the standard library, so they get a folder of their own.
STUBS := $(VENV)/micropython-stubs
MPY_SOURCES := firmware hardware/virtual tests/firmware bench/firmware_sign_board.py

.PHONY: test check lint typecheck demo bench venv clean postgresql dist

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[server,dev]'
	touch $(STAMP)

$(STUBS)/.installed: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --target $(STUBS) 'micropython-esp32-stubs==1.29.*'
	touch $@

# An independent signed-note verifier for the ledger's checkpoints: the Go checksum
# database's own note package (Debian: golang-go, golang-golang-x-mod-dev).
GO_NOTE_SRC := /usr/share/gocode/src/golang.org/x/mod/sumdb/note/note.go
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NOTE_VERIFY := build/note-verify

$(GO_NOTE_SRC):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends golang-go golang-golang-x-mod-dev

$(NOTE_VERIFY): tests/interop/note_verify.go $(GO_NOTE_SRC)
	mkdir -p build/gocache
	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(CURDIR)/build/gocache go build -o $@ tests/interop/note_verify.go

# The same Go module's tile code (sumdb/tlog) reads the log's tiles as an independent client.
TLOG_CHECK := build/tlog-check

$(TLOG_CHECK): tests/interop/tlog_check.go $(GO_NOTE_SRC)
	mkdir -p build/gocache
	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(CURDIR)/build/gocache go build -o $@ tests/interop/tlog_check.go

# PostgreSQL for the storage tests (Debian's server package): the tests run a throw-away
# cluster of their own (tests/pg.py); nothing is configured system-wide.
PG_INITDB := build/.postgresql

$(PG_INITDB):
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql; }
	mkdir -p build && touch $@

postgresql: $(PG_INITDB)

# Chromium for the web pages' browser tests (Debian's package; Playwright for Python drives it).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

# Debian's mosquitto for the MQTT transport's tests (tests/test_mqtt.py runs brokers of its own).
MOSQUITTO := /usr/sbin/mosquitto

$(MOSQUITTO):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends mosquitto

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) $(STUBS)/.installed
	$(BIN)/mypy
	MYPYPATH=$(STUBS) $(BIN)/mypy --config-file firmware/mypy.ini --custom-typeshed-dir $(STUBS) $(MPY_SOURCES)

test: lint typecheck $(NOTE_VERIFY) $(TLOG_CHECK) $(PG_INITDB) $(CHROMIUM) $(MOSQUITTO)
	$(BIN)/pytest

# The fast tier for the edit loop: everything but the slow tiers (markers in pyproject.toml).
SLOW_TIERS := crash or pg_crash or fuzz or browser or demo or board

check: lint $(NOTE_VERIFY) $(TLOG_CHECK) $(PG_INITDB)
	$(BIN)/pytest -q -n 2 -m "not ($(SLOW_TIERS))"

demo: $(STAMP) $(if $(findstring mqtt,$(DEMO_ARGS)),$(MOSQUITTO))
	$(BIN)/wattproof demo --serve $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/firmware_sign.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/ingest.py --devices 2 --packets 2000 --batch 16 --workers 2 --threads 1
	$(BIN)/python bench/ingest_steps.py
	$(BIN)/python bench/proofs.py
	$(BIN)/python bench/energy.py
	$(BIN)/python bench/certificates.py
	$(BIN)/python bench/matching.py
	$(BIN)/python bench/communities.py
	$(BIN)/python bench/ocmf_sign.py
	$(BIN)/python bench/charging.py
	$(BIN)/python bench/provenance.py
	$(BIN)/python bench/pages.py

# The package as a wheel (dist/): what an auditor installs for `wattproof verify` alone.
dist: $(STAMP)
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir dist .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
