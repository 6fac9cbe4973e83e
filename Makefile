# faceaudit: `make demo` and `make test` set everything up on a fresh machine.
# Needs Python 3.11+, Java 17+ and Maven (installed with apt-get when missing),
# and a Rust toolchain (cargo, Rust >= 1.88) for the native decoder.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NATIVE_STAMP := $(VENV)/.native-stamp
NATIVE_SOURCES := native/Cargo.toml native/Cargo.lock native/pyproject.toml \
  native/faceaudit_native.pyi $(wildcard native/src/*.rs)
# rustup puts cargo in ~/.cargo/bin, which a non-login shell may lack on PATH.
CARGO := $(or $(shell command -v cargo),$(wildcard $(HOME)/.cargo/bin/cargo))
DEMO_EVENTS ?= 20000
DEMO_DEVICES ?= 40
DASHBOARD_PORT ?= 8080
DASHBOARD_PID := .faceaudit/dashboard.pid

.PHONY: help install prereqs demo dashboard-start dashboard-stop test test-faults bench lint broker-stop clean

help:
	@echo "make demo   set up, start the local Kafka broker, simulate a fleet, validate into chDB"
	@echo "make test   set up and run the whole test suite on its own broker"
	@echo "make test-faults   only the fault-injection tests"
	@echo "make bench   throughput, latency and memory on its own broker (BENCH_EVENTS=1000000)"
	@echo "make lint   ruff"
	@echo "make dashboard-stop   stop the demo dashboard"
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

# The Rust extension (native/): rebuilt whenever its sources change; cargo
# keeps its build under native/target, so a rebuild compiles only our crate.
$(NATIVE_STAMP): $(STAMP) $(NATIVE_SOURCES)
	@test -n "$(CARGO)" || { echo "make install: the native decoder needs a Rust toolchain (cargo, Rust >= 1.88); install it with rustup (https://rustup.rs) and run make again"; exit 1; }
	@echo "building the native decoder (faceaudit_native); the first build takes a minute or so"
	PATH="$(dir $(CARGO)):$$PATH" $(BIN)/pip install -q ./native
	touch $@

install: prereqs $(STAMP) $(NATIVE_STAMP)

demo: install dashboard-stop
	$(BIN)/faceaudit broker start
	@# The auditor's key signs the validator's digests of what it stores (docs/verify.md).
	@ls .faceaudit/keys/auditor-*.pem > /dev/null 2>&1 || \
	  $(BIN)/faceaudit keys generate --owner auditor
	$(BIN)/faceaudit simulate --events $(DEMO_EVENTS) --devices $(DEMO_DEVICES) --seed $$(date +%s) \
	  --gap-rate 0.002 --tamper-rate 0.001 --skew-rate 0.0005 --stop-signing --registry-faults
	$(BIN)/faceaudit consume --until-idle 5
	$(BIN)/faceaudit verify --no-progress
	@echo "the stored trail verifies against the signed digests; check it again any time:"
	@echo "  $(BIN)/faceaudit verify"
	@$(MAKE) --no-print-directory dashboard-start

# The dashboard opens the embedded store after the validator has closed it
# (chDB: one process per store) and keeps running in the background.
dashboard-start: $(STAMP)
	@token=$$($(BIN)/faceaudit dashboard --make-token demo --replace) || exit 1; \
	nohup $(BIN)/faceaudit dashboard --port $(DASHBOARD_PORT) \
	  --access-log .faceaudit/dashboard-access.log > .faceaudit/dashboard.log 2>&1 & \
	echo $$! > $(DASHBOARD_PID); \
	for i in $$(seq 50); do \
	  curl -fs http://127.0.0.1:$(DASHBOARD_PORT)/healthz >/dev/null && break; sleep 0.2; done; \
	curl -fs http://127.0.0.1:$(DASHBOARD_PORT)/healthz >/dev/null \
	  || { echo "dashboard did not start:"; tail -n 5 .faceaudit/dashboard.log; exit 1; }; \
	echo ""; \
	echo "Dashboard:  http://127.0.0.1:$(DASHBOARD_PORT)/login (paste the demo token)"; \
	echo "Demo token: $$token  (API: curl -H 'Authorization: Bearer $$token' http://127.0.0.1:$(DASHBOARD_PORT)/api/overview)"; \
	echo "Stop it with: make dashboard-stop"

dashboard-stop:
	@if [ -f $(DASHBOARD_PID) ]; then \
	  pid=$$(cat $(DASHBOARD_PID)); \
	  if ps -p $$pid -o args= 2>/dev/null | grep -q "faceaudit dashboard"; then \
	    kill $$pid; while kill -0 $$pid 2>/dev/null; do sleep 0.2; done; fi; \
	  rm -f $(DASHBOARD_PID); fi

test: install lint
	$(BIN)/pytest -q

test-faults: install
	$(BIN)/pytest -q tests/test_faults.py tests/test_poison.py tests/test_fuzz.py

bench: install
	$(BIN)/python -m bench.run $(if $(BENCH_EVENTS),--events $(BENCH_EVENTS))

lint: $(STAMP)
	$(BIN)/ruff check .

broker-stop: $(STAMP)
	$(BIN)/faceaudit broker stop

clean: dashboard-stop broker-stop
	rm -rf .faceaudit
