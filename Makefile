# Build tooling for github.com/caudal-go/caudal.
# Run `make` (or `make help`) to list the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO            ?= go
BIN           := $(CURDIR)/bin
GOLANGCI_LINT := $(BIN)/golangci-lint
BENCHSTAT     := $(BIN)/benchstat
# Tool versions are pinned by the `tool` directives in tools/go.mod.
TOOLS_DEPS    := tools/go.mod tools/go.sum

BENCH_REPORT := go run ./cmd/caudal bench --variant naive

.PHONY: bench-compare bench-ir bench-optimize bench-report help build test cover lint fmt-check vet bench bench-smoke bench-table bench-peers bench-durable tidy-lint tools example clean

help: ## Show this help
	@echo "Usage: make <target>"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Compile every package (go build ./...)
	$(GO) build ./...

test: ## Run the tests with the race detector (go test -race ./...)
	$(GO) test -race ./...

cover: ## Run the tests with coverage; writes coverage.out and prints the total
	$(GO) test -race -covermode=atomic -coverprofile=coverage.out ./...
	$(GO) tool cover -func=coverage.out | tail -n 1
	@echo "HTML report: go tool cover -html=coverage.out"

fmt-check: ## Fail if any Go file is not gofmt-formatted
	@files="$$(find . -name '*.go' -not -path './.git/*' -not -path './bin/*' -not -path '*/testdata/*' -print0 | xargs -0 -r gofmt -l)"; \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

vet: ## Run go vet ./...
	$(GO) vet ./...

lint: fmt-check vet $(GOLANGCI_LINT) ## gofmt check, go vet and golangci-lint (installs tools if missing)
	$(GOLANGCI_LINT) run ./...

bench: ## Run all benchmarks 10 times and save them to bench.txt (compare with ./bin/benchstat)
	$(GO) test -run='^$$' -bench=. -benchmem -count=10 ./... | tee bench.txt

bench-smoke: ## Run every benchmark once, to check that they still work
	$(GO) test -run='^$$' -bench=. -benchtime=1x ./...

bench-table: ## Run the core and control-flow benchmarks (-count=10) and regenerate the README performance table
	$(GO) test -run='^$$' -bench='^Benchmark(Floor|Execute|Seq|Journal|Parallel|Loop|Map|Isolation)$$' -benchmem -count=10 . > bench-core.txt
	$(GO) run ./internal/tools/benchtable -in bench-core.txt -readme README.md \
		-cmd "go test -run='^\$$' -bench='^Benchmark(Floor|Execute|Seq|Journal|Parallel|Loop|Map|Isolation)\$$' -benchmem -count=10 ."

bench-compare: $(BENCHSTAT) ## Compare the README table's benchmarks at BASE (a git revision) with the working tree, alternating (COUNT=15)
	./internal/tools/benchcompare/benchcompare.sh $(BASE) $(or $(COUNT),15)

bench-ir: ## Instructions per op of the README table's rows at BASE and in the working tree (callgrind; needs valgrind)
	./internal/tools/benchcompare/ircompare.sh $(BASE)

bench-peers: ## Run the peer comparisons (10 alternating passes) and regenerate benchmarks/RESULTS.md
	cd benchmarks && ./run.sh

bench-durable: ## Run the durable-run benchmarks (stores; Caudal beside go-workflows; 6 passes) and regenerate benchmarks/DURABLE.md
	cd benchmarks && ./durable.sh

tidy-lint: ## Fail if go mod tidy would change go.mod or go.sum
	$(GO) mod tidy
	git diff --exit-code -- go.mod go.sum
	@if [ -n "$$(git status --porcelain -- go.mod go.sum)" ]; then \
		echo "go mod tidy left changes in go.mod/go.sum:"; git status --porcelain -- go.mod go.sum; exit 1; fi

tools: ## Install the pinned dev tools (golangci-lint, benchstat) into ./bin
	cd tools && GOBIN=$(BIN) $(GO) install tool

# Installed on demand: rebuilt when ./bin lacks them or tools/go.mod changes.
$(GOLANGCI_LINT) $(BENCHSTAT) &: $(TOOLS_DEPS)
	cd tools && GOBIN=$(BIN) $(GO) install tool
	@touch $(GOLANGCI_LINT) $(BENCHSTAT)

example: ## Run the quickstart example (go run ./examples/quickstart)
	$(GO) run ./examples/quickstart

clean: ## Remove ./bin and generated reports (bench.txt, coverage.out)
	rm -rf $(BIN) bench.txt coverage.out

bench-optimize: ## Measure every component, preset, optimized and auto on every designed workload (matrix suite) and optimized and auto on the seed suite, --check both, and regenerate the README's study and optimization tables
	mkdir -p docs/bench
	rm -f docs/bench/optimize-matrix.json docs/bench/optimize-seed.json # never a table from a stale report
	status=0; \
	go run ./cmd/caudal bench --suite matrix --check --md docs/bench/optimize-matrix.md --json docs/bench/optimize-matrix.json > /dev/null || status=1; \
	go run ./cmd/caudal bench --suite seed --variant optimized --variant auto --check --md docs/bench/optimize-seed.md --json docs/bench/optimize-seed.json > /dev/null || status=1; \
	go run ./internal/tools/optimizetable -designed docs/bench/optimize-matrix.json -seed docs/bench/optimize-seed.json -cmd 'make bench-optimize' -readme README.md && exit $$status

bench-report: ## Run the seed and designed suites with the negative control and regenerate docs/bench/
	mkdir -p docs/bench
	$(BENCH_REPORT) --suite seed --md docs/bench/seed.md --json docs/bench/seed.json > /dev/null
	$(BENCH_REPORT) --suite designed --md docs/bench/designed.md --json docs/bench/designed.json > /dev/null
