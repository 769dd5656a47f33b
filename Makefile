# Zaits webhook gateway. `make run` runs the whole system, `make test` runs every test.
# Both install and start what they need (Kafka, ClickHouse) on a fresh machine.

SHELL      := /bin/bash
STATE      ?= $(CURDIR)/.state
BIN        := $(STATE)/bin/zaits
GO         ?= go
STACK      := deploy/local/stack.sh
STATICCHECK_VERSION := v0.8.2
# Integration tests share one Kafka and one ClickHouse: two packages at a time fit 2 cores.
TEST_FLAGS ?= -count=1 -p 2 -timeout 12m

export ZAITS_STATE_DIR := $(STATE)

.PHONY: run test stop stack cluster build lint fuzz tools chdb chromium verifiers bench chaos deploy-check

## run: start Kafka + ClickHouse if needed, build, run all components in the foreground;
## Ctrl-C stops the system and the servers this run started
run: build
	deploy/local/run.sh $(BIN) $(RUN_FLAGS)

## test: start the stack if needed, then lint (gofmt, go vet, staticcheck: CI enforces it) and
## every test, integration tests included
test: tools stack chdb chromium verifiers lint
	deploy/check.sh
	$(GO) test $(TEST_FLAGS) ./...
	$(MAKE) --no-print-directory fuzz

## fuzz: every fuzz target of the module (each `func FuzzX` in a _test.go file), FUZZTIME each.
## Fuzzing runs on Go 1.27 (fetched by the go command from the module proxy, ~76 MB once): Go 1.26's
## fuzz coordinator can end a -fuzztime run with a spurious "context deadline exceeded" failure on
## a loaded machine (golang/go#75804, fixed in 1.27); everything else builds and tests with $(GO).
FUZZTIME ?= 5s
FUZZ_GOTOOLCHAIN ?= go1.27.3
fuzz:
	@git grep -n '^func Fuzz[A-Za-z0-9_]*(' -- '*_test.go' | sed -E 's|^(.*)/[^/]*_test.go:[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*|./\1 \2|' | sort -u | \
	while read -r pkg name; do \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		GOTOOLCHAIN=$(FUZZ_GOTOOLCHAIN) $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) "$$pkg" </dev/null || exit 1; \
	done

## stop: stop the Kafka (single node and cluster) and ClickHouse processes the scripts started
stop:
	$(STACK) stop

## stack: start Kafka and ClickHouse (idempotent); ZAITS_KAFKA_NODES=3 starts the 3-node cluster instead
stack:
	$(STACK) start

## cluster: start a 3-node Kafka KRaft cluster on 127.0.0.1:19092-19094 (controllers 19192-19194,
## replication factor 3, min.insync.replicas 2), next to the single broker on 9092 (idempotent)
cluster:
	ZAITS_KAFKA_NODES=3 deploy/local/kafka.sh start

## build: build the zaits binary into .state/bin
build: tools
	$(GO) build -o $(BIN) ./cmd/zaits

## bench: start the stack if needed, run the standard benchmark suite (at most 10 minutes) and
## write bench/results/<time>-<suite>/ (report.md, results.json, SVG charts); scenarios that need the
## system start a private zaits of their own (-bench.system=start); BENCH_FLAGS=... adds flags
bench: build stack
	$(GO) build -o $(STATE)/bin/zaits-bench ./bench/cmd/zaits-bench
	$(STATE)/bin/zaits-bench $(BENCH_FLAGS)

## chaos: the chaos matrix (bench/chaos) on the 3-node cluster: under load, kills a broker, the active
## controller, one of two dispatchers / gateways (routers), analytics, stops ClickHouse; writes
## bench/results/<time>-chaos/ (report.md, results.json, logs); CHAOS_FLAGS=... adds flags
chaos: build cluster
	$(GO) build -o $(STATE)/bin/zaits-chaos ./bench/cmd/zaits-chaos
	$(STATE)/bin/zaits-chaos -chaos.zaits-bin=$(BIN) $(CHAOS_FLAGS)

## deploy-check: install the deployment checkers (Debian prometheus and docker-compose,
## kubernetes-validate in .state/, helm from the module proxy), check deploy/ statically (promtool,
## helm lint + template | kubernetes-validate, docker-compose config), then the Go test that runs a
## real Prometheus against a running zaits and queries every alert and dashboard expression
deploy-check: tools stack
	deploy/check.sh
	$(GO) test $(TEST_FLAGS) ./deploy/

## lint: gofmt check, go vet, staticcheck
lint: tools
	@out=$$("$$($(GO) env GOROOT)/bin/gofmt" -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## chdb: a Python virtualenv with chdb-core (ClickHouse 26.x in-process); the analytics
## tests prove every ClickHouse migration and query on it as well as on the 18.16 server
chdb: $(STATE)/venv/.chdb-core-26.9.0
$(STATE)/venv/.chdb-core-26.9.0:
	python3 -m venv $(STATE)/venv
	$(STATE)/venv/bin/pip install --quiet --disable-pip-version-check chdb-core==26.9.0
	touch $@

## verifiers: node, python3 and php for the seed's signature snippets (gateway/rotation_test.go)
verifiers:
	@deploy/local/verifiers.sh

## chromium: Debian's Chromium for the console's browser tests (gateway/console)
chromium:
	@deploy/local/chromium.sh

tools:
	@deploy/local/toolchain.sh
