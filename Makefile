# Outrigger — build, run, test, bench.
GO       ?= go
BIN      ?= bin/outrigger
PKGS     ?= ./...
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)

.PHONY: build run test test-short soak fuzz bench bench-go vet clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/outrigger

# Starts the example app and a sidecar in front of it, all on loopback.
run: build
	$(BIN) demo

vet:
	$(GO) vet $(PKGS)

# Every test, with the race detector. Long soak and fault suites run in `make soak`.
test: vet
	$(GO) test -race -count=1 -timeout 14m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Long-running soak and fault suites (build tag `soak`).
soak:
	$(GO) test -tags soak -count=1 -timeout 30m $(PKGS)

# Each fuzz target for a short while; FUZZTIME=5m for longer runs.
FUZZTIME ?= 20s
fuzz:
	./.ci/fuzz $(FUZZTIME)

# Go benchmarks, then the load scripts that compare Outrigger with a baseline.
bench: build bench-go
	./scripts/bench.sh

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin
