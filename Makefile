# Outrigger: build, run, test, fuzz, soak, bench.
#   make run     build, then start the example app with a sidecar in front of it
#   make test    go vet and gofmt, then every test with the race detector
GO       ?= go
BIN      ?= bin/outrigger
PKGS     ?= ./...
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: build run deps test test-short vet soak fuzz bench bench-go clean bench-log

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/outrigger

# Starts the example catalog app and a sidecar in front of it, all on loopback,
# and prints where to send requests. Ctrl-C drains and stops both.
run: build
	$(BIN) demo

# Installs the race detector's C toolchain and the tools some tests use, when
# missing (apt-get as root on Debian).
deps:
	./.ci/deps

# go vet, and gofmt's verdict on every Go file (a file it would change fails).
vet:
	$(GO) vet $(PKGS)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:" $$unformatted; exit 1; fi

# Every test, with the race detector. Long soak and fault suites are in `make soak`.
test: deps vet
	$(GO) test -race -count=1 -timeout 14m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Long-running soak and fault suites (build tag `soak`, tests named TestSoak*), with the race detector.
soak: deps
	$(GO) test -race -tags soak -run Soak -count=1 -timeout 40m $(PKGS)

# Each fuzz target for FUZZTIME (FUZZTIME=5m for longer runs).
FUZZTIME ?= 20s
fuzz:
	./.ci/fuzz $(FUZZTIME)

# Load comparison: Outrigger beside nginx, HAProxy and httputil when the peer
# bench is present (BENCH_SHARED), else Outrigger against direct. BENCH_ARGS
# are passed on, e.g. BENCH_ARGS='--rounds 3'.
BENCH_ARGS ?=
bench: build
	./.ci/bench.sh --bin $(BIN) $(BENCH_ARGS)

# Go benchmarks of every package (short: one second each).
BENCHTIME ?= 1s
BENCH_SHARED ?= $(abspath ../shared/bench)
bench-go:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -benchmem $(PKGS)

clean:
	rm -rf bin

# Durable-log figures beside the disk's own fsync rate and sequential bandwidth
# (and NATS JetStream's, when nats-server is installed and the peer bench is
# present), then group commit and publish throughput.
bench-log:
	@if [ -x "$(BENCH_SHARED)/log-bench.sh" ]; then "$(BENCH_SHARED)/log-bench.sh"; \
	  else echo "bench-log: $(BENCH_SHARED)/log-bench.sh not found; Go benchmarks only"; fi
	$(GO) test -run '^$$' -bench 'AppendSyncGroupCommit/size=100/' -benchtime $(BENCHTIME) -count 2 ./eventlog/segment/
	$(GO) test -run '^$$' -bench 'PublishSync' -benchtime $(BENCHTIME) -count 2 ./eventlog/
