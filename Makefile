# faceaudit: `make demo` and `make test` set everything up on a fresh machine.
# Needs Python 3.11+, Java 17+ and Maven (installed with apt-get when missing).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_EVENTS ?= 20000
DEMO_DEVICES ?= 40

.PHONY: help install prereqs demo test test-faults lint broker-stop clean

help:
	@echo "make demo   set up, start the local Kafka broker, simulate a fleet, validate into chDB"
	@echo "make test   set up and run the whole test suite on its own broker"
	@echo "make test-faults   only the fault-injection tests"
	@echo "make lint   ruff"
	@echo "make broker-stop   stop the demo broker"

prereqs:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Java 17 and Maven with apt-get"; \
	  apt-get update -q && apt-get install -y -q openjdk-17-jre-headless maven; }

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: prereqs $(STAMP)

demo: install
	$(BIN)/faceaudit broker start
	$(BIN)/faceaudit simulate --events $(DEMO_EVENTS) --devices $(DEMO_DEVICES) --seed $$(date +%s)
	$(BIN)/faceaudit consume --until-idle 5

test: install lint
	$(BIN)/pytest -q

test-faults: install
	$(BIN)/pytest -q tests/test_faults.py tests/test_poison.py tests/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check .

broker-stop: $(STAMP)
	$(BIN)/faceaudit broker stop

clean: broker-stop
	rm -rf .faceaudit
