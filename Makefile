# onnxserve: `make run` serves models/, `make test` runs every test.
# Both fetch the pinned ONNX Runtime library first (scripts/fetch-onnxruntime.sh).

SHELL := /bin/bash
GO ?= go
ORT_VERSION := 1.30.0
ORT_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x64)
ORT_LIB := $(CURDIR)/.cache/onnxruntime/$(ORT_VERSION)/linux-$(ORT_ARCH)/libonnxruntime.so.1
export ONNXRUNTIME_LIB ?= $(ORT_LIB)

BIN := bin/onnxserve
ARGS ?=

.PHONY: all lib build run test test-short tools proto models fuzz vet fmt clean

all: build

lib: ## fetch and verify the pinned ONNX Runtime library (cached)
	@scripts/fetch-onnxruntime.sh

build: lib
	$(GO) build -o $(BIN) ./cmd/serve

run: build ## serve ./models on ports 8000 (HTTP), 8001 (gRPC), 8002 (metrics)
	./$(BIN) --model-repository models $(ARGS)

tools: ## install test tools (protoc, prometheus) when missing and permitted
	@scripts/ensure-tools.sh

test: lib tools ## every test, with the race detector, against the real ONNX Runtime
	ONNXSERVE_REQUIRE_ORT=1 ONNXSERVE_REQUIRE_TOOLS=$$(scripts/ensure-tools.sh --check && echo 1 || echo 0) \
		$(GO) test -race -count=1 -timeout 15m ./...

test-short: lib
	ONNXSERVE_REQUIRE_ORT=1 $(GO) test -count=1 -short ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

proto: ## regenerate proto/*.pb.go with the pinned generators
	proto/generate.sh

models: ## regenerate the bundled models/ with the committed generator
	$(GO) run ./cmd/genmodels -out models

FUZZTIME ?= 20s
fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin
