# meshlens — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/meshlens
export CGO_ENABLED ?= 0
# The datasets live beside the repository (../shared), as in CI.
SHARED_DIR ?= $(abspath ../shared)

# Fragments in mk/ add to these: TEST_DEPS (prerequisites of `make test`, e.g.
# installing a real Prometheus), BENCH_CMDS (commands that print figures),
# UI_DEPS (front-end build before the Go build).
TEST_DEPS :=
BENCH_CMDS :=
UI_DEPS :=
include $(wildcard mk/*.mk)

.PHONY: all build run test unit bench vet fmt clean

all: build

build: $(UI_DEPS)
	$(GO) build -o $(BIN) ./cmd/meshlens

run: build
	./$(BIN) serve --demo

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Unit and integration tests; integration tests use real peers that TEST_DEPS installs.
test: $(UI_DEPS) $(TEST_DEPS) vet
	CGO_ENABLED=1 MESHLENS_INTEGRATION=1 $(GO) test -race -count=1 -timeout 25m ./...

unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

bench: $(UI_DEPS)
	$(GO) run ./cmd/meshlens bench graph
	@for c in $(BENCH_CMDS); do echo "== $$c"; $$c || exit 1; done

clean:
	rm -rf bin
