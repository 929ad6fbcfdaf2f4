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

.PHONY: build run test vet fmt bench-orders bench-reports clean

build:
	$(GO) build -o $(BIN) ./service/cmd/shopd

## run: find or start a database, create + migrate + seed it, serve on :3000
run: build
	./scripts/run.sh

## test: go vet and the race-enabled test suite (fuzz tests run their seed corpus)
test: vet
	$(GO) test -race -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w service migrations

## bench-orders: GET /orders for the heavy user vs a query-per-order loop
bench-orders:
	$(GO) test -run '^$$' -bench 'OrderHistory' -benchtime 200x -count 1 ./service/httpapi/

## bench-reports: /health and GET /products latency idle vs while clients
## download a 100,000-order report in a loop, and shopd's peak memory
## (a fresh database, shopd on a free port; flags: BENCH_REPORTS_FLAGS="-downloaders 8")
bench-reports: build
	$(GO) run ./bench/reports -shopd $(BIN) $(BENCH_REPORTS_FLAGS)

clean:
	rm -rf bin
