# shoplab: `make run` serves the seeded service on :3000; `make test` runs
# the whole test suite against a real PostgreSQL.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/shopd

# Tests create a fresh database per test package on this server. When
# TEST_DATABASE_URL is unset and a local PostgreSQL answers, use it;
# otherwise the tests fall back to testcontainers (a Docker engine).
LOCAL_PG_URL := postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
ifeq ($(TEST_DATABASE_URL),)
  ifeq ($(shell pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && echo up),up)
    export TEST_DATABASE_URL := $(LOCAL_PG_URL)
  endif
endif

.PHONY: deps build run test vet fmt config-docs lint-migrations clean datadog-apply monitors-check dashboards-preview chaos bench-orders bench-telemetry bench-checkout bench-import bench-search bench-reports bench-gate bench-compare probes bench-scaling test-pgbouncer bench-pgbouncer lint-api api-diff

## deps: install the Debian packages the tests and gates use when missing
## (nodejs, npm, postgresql-client, pgbench, pgbouncer, pg_auto_failover); needs root
deps:
	./scripts/install-deps.sh

build:
	$(GO) build -o $(BIN) ./service/cmd/shopd

## run: find or start a database, create + migrate + seed it, serve on :3000
run: build
	./scripts/run.sh

## test: the Debian packages the tests need (make deps: pgbouncer, pg_auto_failover, ...;
## nothing when they are there), go vet and the race-enabled test suite (fuzz tests
## run their seed corpus)
test: deps vet
	$(GO) test -race -count=1 -timeout 20m ./...

## test-pgbouncer: the integration tests of checkout, import (COPY), reports
## (cursors), the outbox relay and several shopd instances again, every
## connection through a real pgbouncer in transaction pooling mode with
## default_query_exec_mode=exec (docs/pgbouncer.md); needs pgbouncer (make deps).
## The httpapi subset leaves out TestCheckoutLockWaitTimedOnLockStatement, whose
## "other statements took < 50 ms" holds direct but not with a pooler's extra hop on
## a loaded machine. The two go test commands run at once (wall time).
PGBOUNCER_HTTPAPI_TESTS := ^Test(Checkout|Import|Report|HealthAndReady|OrderHistory|CreateUser|BuyerAuth)
PGBOUNCER_HTTPAPI_SKIP  := ^TestCheckoutLockWaitTimedOnLockStatement$$
test-pgbouncer:
	@PGTEST_PGBOUNCER=1 $(GO) test -race -count=1 -timeout 10m -run '$(PGBOUNCER_HTTPAPI_TESTS)' -skip '$(PGBOUNCER_HTTPAPI_SKIP)' ./service/httpapi/ & httpapi=$$!; \
	PGTEST_PGBOUNCER=1 $(GO) test -race -count=1 -timeout 10m ./service/postgres/ ./service/relay/ ./service/cmd/shopd/multiinstance/ ./internal/pgbouncertest/; rest=$$?; \
	wait $$httpapi && exit $$rest

vet:
	$(GO) vet ./...

## lint-migrations: squawk (npm squawk-cli, installed into tools/squawk) on every migration; exceptions in .squawk.toml
lint-migrations:
	./scripts/lint-migrations.sh

## lint-api: Redocly CLI (npm @redocly/cli, installed into tools/redocly), recommended ruleset, on api/openapi.yaml
lint-api:
	./scripts/lint-api.sh

## api-diff: the breaking changes of api/openapi.yaml since BASE (oasdiff; non-zero exit on any): make api-diff BASE=main
api-diff:
	./scripts/api-diff.sh $(BASE)

fmt:
	gofmt -l -w service migrations bench ops monitors internal chaos api

## config-docs: rewrite README.md's configuration tables from service/cmd/shopd/config.go
config-docs:
	$(GO) test -count=1 -run '^TestREADMEConfig$$' ./service/cmd/shopd/ -update

## bench-orders: GET /orders for the heavy user vs a query-per-order loop
bench-orders:
	$(GO) test -run '^$$' -bench 'OrderHistory' -benchtime 200x -count 1 ./service/httpapi/

## bench-checkout: vegeta against a fresh shopd + database (hot product, uniform carts),
## invariants checked in the database, pgbench with the same transaction as the floor.
## Flags: make bench-checkout BENCH_FLAGS='-duration 20s -workers 16 -rate 300' (or -url/-db for a running service)
## With SCENARIO=<name> it runs that chaos scenario instead (make chaos SCENARIO=<name>):
## make bench-checkout SCENARIO=lock-holder reproduces the 15-second checkout.
BENCH_FLAGS ?=
SCENARIO ?=
bench-checkout: build
ifneq ($(SCENARIO),)
	$(GO) run ./chaos/cmd/chaos -shopd $(BIN) -scenario $(SCENARIO) $(CHAOS_FLAGS)
else
	$(GO) run ./bench/checkout -shopd $(BIN) $(BENCH_FLAGS)
endif
## bench-scaling: the figures of docs/scaling.md: CPU per checkout (shopd and its PostgreSQL
## backends, uniform carts and one hot product, via bench-checkout), the hot row's lock hold time,
## the flash-sale split across 1/4/16 rows (pgbench), the server's max_connections; 3 rounds,
## about 6 minutes; writes bench/results/scaling.json. Flags: BENCH_SCALING_FLAGS='-rounds 5'
BENCH_SCALING_FLAGS ?=
bench-scaling: build
	$(GO) build -o bin/bench-checkout ./bench/checkout
	$(GO) run ./bench/scaling -shopd $(BIN) -checkout bin/bench-checkout $(BENCH_SCALING_FLAGS)
## bench-import: 1,000 and 100,000 products through POST /admin/products/import
## against psql \copy of the same rows, in one run, on a fresh database and
## a shopd of its own (free port); prints a table, writes bench/results/import.json
bench-import: build
	$(GO) run ./bench/import -shopd $(BIN) -out bench/results/import.json
## bench-pgbouncer: checkout throughput of 1 and 2 shopd, direct and through a real
## pgbouncer (transaction pooling, exec mode), interleaved rounds in one run (docs/pgbouncer.md).
## Flags: make bench-pgbouncer BENCH_PGBOUNCER_FLAGS='-rounds 5 -duration 10s -workers 32'
BENCH_PGBOUNCER_FLAGS ?=
bench-pgbouncer: build
	$(GO) run ./bench/pgbouncer -shopd $(BIN) $(BENCH_PGBOUNCER_FLAGS)
## bench-search: product search on 100,000 products, with and without the
## trigram indexes, in one run (plus a deep OFFSET page vs its keyset page)
bench-search:
	$(GO) test -run '^$$' -bench 'ProductSearch' -benchtime 20x -count 1 -timeout 10m -v ./service/postgres/
## bench-reports: /health and GET /products latency idle vs while clients
## download a 100,000-order report in a loop, and shopd's peak memory
## (a fresh database, shopd on a free port; flags: BENCH_REPORTS_FLAGS="-downloaders 8")
bench-reports: build
	$(GO) run ./bench/reports -shopd $(BIN) $(BENCH_REPORTS_FLAGS)

## bench-compare: BASE (required: any git revision) against the working tree,
## uncommitted changes included: both built, the same HTTP workloads (product
## list, product, search, order history, checkout, a 100-row import) and go
## test benchmarks run interleaved (base, new, base, new...), a fresh process and
## database per run; prints benchstat's table, writes bench/results/compare.txt.
## Flags: make bench-compare BASE=main BENCH_COMPARE_FLAGS='-rounds 10 -benchtime 2s -workloads checkout -gotest=false'
BASE ?=
BENCH_COMPARE_FLAGS ?=
bench-compare:
	@test -n "$(BASE)" || { echo "bench-compare: say what to compare against: make bench-compare BASE=HEAD~1 (or BASE=main, a sha)" >&2; exit 2; }
	$(GO) run ./bench/compare -base '$(BASE)' $(BENCH_COMPARE_FLAGS)

## datadog-apply: create or update every dashboard, monitor and SLO in Datadog, matched by
## its shoplab_id; a dry run unless APPLY=1. Needs DD_API_KEY, DD_APP_KEY (DD_SITE: datadoghq.com).
## Flags: make datadog-apply DATADOG_APPLY_FLAGS='-monitors monitors -slos monitors/slos'
APPLY ?=
DATADOG_APPLY_FLAGS ?=
datadog-apply:
	$(GO) run ./ops/datadog-apply $(if $(filter 1 true yes,$(APPLY)),-apply) $(DATADOG_APPLY_FLAGS)

## monitors-check: a healthy mixed load against a fresh shopd + database, its
## DogStatsD stream captured, every monitor evaluated over it: all must stay OK.
## Writes bench/results/monitors-check.json and bench/results/capture.jsonl.
## Flags: make monitors-check MONITORS_CHECK_FLAGS='-duration 2m -rate 40'
MONITORS_CHECK_FLAGS ?=
monitors-check: build
	$(GO) run ./bench/monitors-check -shopd $(BIN) $(MONITORS_CHECK_FLAGS)

## dashboards-preview: every dashboard widget drawn from monitors-check's capture
## (or a run of its own) into bench/results/dashboards-preview.html
## Flags: make dashboards-preview PREVIEW_FLAGS='-png bench/results/dashboards-preview.png'
PREVIEW_FLAGS ?=
dashboards-preview: build
	$(GO) run ./bench/dashboards-preview -shopd $(BIN) $(PREVIEW_FLAGS)

## chaos: list the incident scenarios; make chaos SCENARIO=<name> runs one at full
## scale (fresh database and shopd, load, a real fault, every monitor evaluated),
## prints its timeline and writes bench/results/chaos/<name>.{json,html}.
## Flags: make chaos SCENARIO=lock-holder CHAOS_FLAGS='-factor 60' (compressed, as go test runs it)
CHAOS_FLAGS ?=
chaos: build
	$(GO) run ./chaos/cmd/chaos -shopd $(BIN) $(if $(SCENARIO),-scenario $(SCENARIO)) $(CHAOS_FLAGS)

## probes: issue 16's probes re-run against bin/shopd on a fresh seeded database
## (buyer auth on): every route while 24 slow imports run, a buyer asking for
## another's data, SIGTERM mid-import and mid-checkout, a 429 storm's effect on
## /health. Prints a markdown report, writes bench/results/probes.md.
probes: build
	$(GO) run ./bench/probes -shopd $(BIN)

clean:
	rm -rf bin

## bench-telemetry: the same mixed workload with telemetry on and off, alternating, in one run
bench-telemetry:
	$(GO) test -run '^$$' -bench 'TelemetryOverhead' -benchtime 400x -count 1 ./service/httpapi/

## bench-gate: the ratio gates (README "Performance gates" > "Ratio gates"): short
## runs of bench-orders, -checkout, -import, -reports, -telemetry and -search, each
## against its reference in the same run, median of rounds, one retry; writes
## bench/results/summary.md and bench/results/gate/. Flags: BENCH_GATE_FLAGS='-only import,search'
BENCH_GATE_FLAGS ?=
bench-gate: build
	$(GO) run ./bench/gate -shopd $(BIN) $(BENCH_GATE_FLAGS)
