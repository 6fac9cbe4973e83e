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
DEMO_EVENTS ?= 30000
DEMO_DEVICES ?= 40
DASHBOARD_PORT ?= 8080
DEMO_SEED ?= 1
DEMO_RATE ?= 20
SERVE_PID := .faceaudit/serve.pid
FLEET_PID := .faceaudit/live-fleet.pid

.PHONY: help install prereqs demo demo-live demo-stop deploy-rules test test-faults bench lint broker-stop clean

help:
	@echo "make demo   set up, validate a week of fleet history into chDB, then run the live system"
	@echo "make demo-stop   stop the live demo (fleet, faceaudit serve, broker)"
	@echo "make test   set up and run the whole test suite on its own broker"
	@echo "make test-faults   only the fault-injection tests"
	@echo "make bench   throughput, latency and memory on its own broker (BENCH_EVENTS=1000000)"
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

# The Rust extension (native/): rebuilt whenever its sources change; cargo
# keeps its build under native/target, so a rebuild compiles only our crate.
$(NATIVE_STAMP): $(STAMP) $(NATIVE_SOURCES)
	@test -n "$(CARGO)" || { echo "make install: the native decoder needs a Rust toolchain (cargo, Rust >= 1.88); install it with rustup (https://rustup.rs) and run make again"; exit 1; }
	@echo "building the native decoder (faceaudit_native); the first build takes a minute or so"
	PATH="$(dir $(CARGO)):$$PATH" $(BIN)/pip install -q ./native
	touch $@

install: prereqs $(STAMP) $(NATIVE_STAMP)

# A fresh demo each time: an earlier demo's broker data, store, keys and tokens
# go (the Kafka jars stay), then a week of history is validated and verified,
# and the live system starts: `faceaudit serve` (validator, dashboard and
# /metrics in one process on the embedded store) and a fleet streaming at
# DEMO_RATE events/s, both in the background until `make demo-stop`.
demo: install demo-stop
	rm -rf .faceaudit/kafka .faceaudit/clickhouse .faceaudit/keys .faceaudit/dashboard-tokens.jsonl
	$(BIN)/faceaudit broker start
	@# The auditor's key signs the validator's digests of what it stores (docs/verify.md).
	$(BIN)/faceaudit keys generate --owner auditor
	$(BIN)/faceaudit simulate --history 7 --events $(DEMO_EVENTS) --devices $(DEMO_DEVICES) \
	  --seed $(DEMO_SEED)
	$(BIN)/faceaudit consume --until-idle 5
	$(BIN)/faceaudit verify --no-progress
	@$(MAKE) --no-print-directory demo-live

demo-live: $(STAMP)
	@token=$$($(BIN)/faceaudit dashboard --make-token demo --replace) || exit 1; \
	nohup $(BIN)/faceaudit serve --port $(DASHBOARD_PORT) \
	  --access-log .faceaudit/dashboard-access.log > .faceaudit/serve.log 2>&1 & \
	echo $$! > $(SERVE_PID); \
	nohup $(BIN)/faceaudit simulate --rate $(DEMO_RATE) --events 100000000 \
	  --devices $(DEMO_DEVICES) --seed $$(( $(DEMO_SEED) + 1 )) --no-progress \
	  > .faceaudit/live-fleet.log 2>&1 & \
	echo $$! > $(FLEET_PID); \
	for i in $$(seq 150); do \
	  curl -fs http://127.0.0.1:$(DASHBOARD_PORT)/healthz >/dev/null && break; sleep 0.2; done; \
	curl -fs http://127.0.0.1:$(DASHBOARD_PORT)/healthz >/dev/null \
	  || { echo "faceaudit serve did not start:"; tail -n 5 .faceaudit/serve.log; exit 1; }; \
	echo ""; \
	echo "Live dashboard: http://127.0.0.1:$(DASHBOARD_PORT)/login (paste the demo token)"; \
	echo "Demo token:     $$token"; \
	echo "API:            curl -H 'Authorization: Bearer $$token' http://127.0.0.1:$(DASHBOARD_PORT)/api/overview"; \
	echo "Metrics:        http://127.0.0.1:9464/metrics"; \
	echo "A fleet streams $(DEMO_RATE) events/s into it. Stop it all with: make demo-stop"; \
	echo "Then check the stored trail against its signed digests: $(BIN)/faceaudit verify"

# Stops what `make demo` left running: the live fleet, faceaudit serve (its
# last digest covers all it stored), and the broker.
demo-stop:
	@for pidfile in $(FLEET_PID) $(SERVE_PID); do \
	  if [ -f $$pidfile ]; then \
	    pid=$$(cat $$pidfile); \
	    if ps -p $$pid -o args= 2>/dev/null | grep -q "faceaudit"; then \
	      kill $$pid; while kill -0 $$pid 2>/dev/null; do sleep 0.2; done; fi; \
	    rm -f $$pidfile; fi; done
	@if [ -x $(BIN)/faceaudit ]; then $(BIN)/faceaudit broker stop; fi

test: install lint
	cd native && PATH="$(dir $(CARGO)):$$PATH" cargo test --release --quiet
	$(BIN)/pytest -q

test-faults: install
	$(BIN)/pytest -q tests/test_faults.py tests/test_poison.py tests/test_fuzz.py

bench: install
	$(BIN)/python -m bench.run $(if $(BENCH_EVENTS),--events $(BENCH_EVENTS))

# The Kubernetes PrometheusRule is the alert rule file, wrapped (tests/test_deploy.py).
deploy-rules:
	cd deploy/check && go run . prometheusrule ../prometheus/alerts.yml \
	  > ../kubernetes/base/prometheusrule.yaml

lint: $(STAMP)
	$(BIN)/ruff check .

broker-stop: $(STAMP)
	$(BIN)/faceaudit broker stop

clean: demo-stop
	rm -rf .faceaudit
