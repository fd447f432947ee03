# Tandem — Postgres-native bidirectional sync. `make help` lists the targets.

GO        ?= go
PKGS      ?= ./...
BIN       ?= bin/tandem
# Extra flags for `go test` (e.g. TESTFLAGS='-run Capture -v').
TESTFLAGS ?=
BENCHFLAGS ?= -benchtime=1x -count=1
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help build test test-short bench demo deps lint fmt vet clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-11s %s\n", $$1, $$2}'

build: ## build bin/tandem
	$(GO) build -o $(BIN) ./cmd/tandem

deps: ## make sure the PostgreSQL and Redis server binaries the tests start are here (installs them as root)
	@./.ci/deps

test: deps ## run every test, with the race detector, against throwaway PostgreSQL clusters
	$(GO) test -race -count=1 -timeout 20m $(TESTFLAGS) $(PKGS)

test-short: deps ## the tests without -race (faster)
	$(GO) test -count=1 $(TESTFLAGS) $(PKGS)

bench: deps ## capture and engine benchmarks, printing figures (sizes: BENCH_* variables, see */bench_test.go)
	$(GO) test -run '^$$' -bench . $(BENCHFLAGS) -timeout 60m ./internal/capture/ ./internal/engine/ ./internal/wal/

demo: deps ## the whole story on a throwaway local PostgreSQL: sync both ways, conflicts, 10,000 rows; nothing to configure
	$(GO) run ./cmd/tandem demo

lint: vet ## go vet, gofmt and staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: run make fmt'; exit 1; }
	$(GO) run $(STATICCHECK) $(PKGS)

vet: ## go vet
	$(GO) vet $(PKGS)

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output
	rm -rf bin
