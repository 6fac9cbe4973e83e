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

# Java and Maven run the local Kafka broker; promtool and amtool check the
# alert rules; Chromium drives the dashboard's browser test.
prereqs:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	{ command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null; } \
	  || missing="$$missing prometheus-alertmanager"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing with apt-get:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

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
