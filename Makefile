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

# The Go modules of this repository: the server at the root, and bench/ and
# deploy/, which keep their own dependencies (plotting, profiles, Kubernetes
# and BuildKit types) out of the server's go.mod. Each target that tests,
# vets or lists packages runs once per module (`go -C`).
MODULES := . bench deploy

.PHONY: all lib build run test test-short tools proto models fuzz soak attack vet fmt clean vad check score-1m profiles

all: build

lib: ## fetch and verify the pinned ONNX Runtime library (cached)
	@scripts/fetch-onnxruntime.sh

# Silero VAD v5, the published stateful model the sequence-batching tests
# and the streaming benchmark serve (pinned, sha256-checked, cached in
# .cache/models/; never committed).
export ONNXSERVE_SILERO_VAD ?= $(CURDIR)/.cache/models/silero_vad/silero_vad.onnx
vad: ## fetch and verify Silero VAD v5 (cached)
	@scripts/fetch-silero-vad.sh

build: lib vad
	$(GO) build -o $(BIN) ./cmd/serve

run: build ## serve ./models on ports 8000 (HTTP), 8001 (gRPC), 8002 (metrics)
	./$(BIN) --model-repository models --admin-allow-loopback $(ARGS)

tools: ## install test tools (protoc, prometheus) when missing and permitted
	@scripts/ensure-tools.sh

test: lib vad tools ## every test, with the race detector, against the real ONNX Runtime
	export ONNXSERVE_REQUIRE_ORT=1 ONNXSERVE_REQUIRE_TOOLS=$$(scripts/ensure-tools.sh --check && echo 1 || echo 0); \
		for m in $(MODULES); do $(GO) -C $$m test -race -count=1 -timeout 15m ./... || exit 1; done
	@# A brief live fuzz of the request decoders and tensor validation; the
	@# corpora of every target were replayed above. `make fuzz` runs longer.
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeInferRequest$$' -fuzztime 5s -fuzzminimizetime 2s ./internal/transport/httpapi
	$(GO) test -run '^$$' -fuzz '^FuzzValidateSplit$$' -fuzztime 5s -fuzzminimizetime 2s ./internal/tensor
	$(GO) test -run '^$$' -fuzz '^FuzzCodecUnmarshal$$' -fuzztime 5s -fuzzminimizetime 2s ./internal/transport/grpcapi
	@# The bundled models pass the gate a new version must pass.
	$(MAKE) --no-print-directory check

check: build ## onnxserve check on models/: load, golden tests and latency budgets, as CI runs it
	./$(BIN) check --model-repository models

score-1m: lib ## the score tests (formats agree, server sample, kill -9 then --resume) on 1,000,000 rows; not part of `make test`
	ONNXSERVE_REQUIRE_ORT=1 ONNXSERVE_SCORE_ROWS=1000000 $(GO) test -count=1 -timeout 60m -run '^TestScore(FormatsAgree|ResumeAfterKill)$$' -v ./cmd/serve/

test-short: lib vad
	export ONNXSERVE_REQUIRE_ORT=1; \
		for m in $(MODULES); do $(GO) -C $$m test -count=1 -short ./... || exit 1; done

vet:
	@set -e; for m in $(MODULES); do echo "$(GO) -C $$m vet ./..."; $(GO) -C $$m vet ./...; done
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

proto: ## regenerate proto/*.pb.go with the pinned generators
	proto/generate.sh

models: ## regenerate the bundled models/ with the committed generator
	$(GO) run ./cmd/genmodels -out models

profiles: lib ## the classifier's drift references, models/classifier/*/profile.json, from its reference.npy
	for v in 1 2; do $(GO) run ./cmd/serve profile --model-repository models --model classifier --version $$v --data models/classifier/reference.npy || exit 1; done

FUZZTIME ?= 20s
# Minimizing a new input can take a whole short run; keep it brief.
FUZZMINIMIZETIME ?= 5s
fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for m in $(MODULES); do for pkg in $$($(GO) -C $$m list ./...); do \
		for f in $$($(GO) -C $$m test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) -C $$m test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg; \
		done; \
	done; done

# `make test` runs the same soak for 20s under -race; SOAK_FLAGS=-race
# races the long one too, at the cost of RSS figures that then include the
# race detector's shadow memory.
SOAK_DURATION ?= 5m
SOAK_FLAGS ?=
soak: lib ## chaos soak on loopback for SOAK_DURATION (not part of `make test`); writes bench/SOAK.md
	ONNXSERVE_REQUIRE_ORT=1 ONNXSERVE_SOAK_DURATION=$(SOAK_DURATION) ONNXSERVE_SOAK_REPORT=1 \
		$(GO) test $(SOAK_FLAGS) -count=1 -timeout 30m -run '^TestSoak$$' -v ./cmd/serve/

# `make test` runs the same attacks for 1s each at 1/16 of their size.
ATTACK_DURATION ?= 10s
ATTACK_FLAGS ?=
attack: lib ## hostile clients on loopback (not part of `make test`): header-only bodies, amplifying encodings, descriptor exhaustion, stalled messages; appends bench/SOAK.md
	ONNXSERVE_REQUIRE_ORT=1 ONNXSERVE_ATTACK_DURATION=$(ATTACK_DURATION) ONNXSERVE_ATTACK_FLAGS='$(ATTACK_FLAGS)' ONNXSERVE_ATTACK_REPORT=1 \
		$(GO) test -count=1 -timeout 15m -run '^TestAttack$$' -v ./cmd/serve/

clean:
	rm -rf bin

.PHONY: image-test
image-test: ## opt-in: build the CPU image with podman/buildah, run it read-only as the Deployment does, infer, SIGTERM (skips without a builder or base images)
	scripts/image-test.sh

# Benchmarks (bench/RESULTS.md describes them). The suite pins the server to
# CPU 1 and the load generators to CPU 0, so it wants a quiet machine with at
# least two CPUs; BENCH_ARGS passes flags to bench/run (see its --help).
.PHONY: bench bench-quick bench-profile bench-models bench-tools
BENCH_BIN := .cache/bin
GHZ_VERSION := v0.120.0
BENCH_ARGS ?=

bench-models: ## fetch and verify the benchmark's extra models (cached)
	@scripts/fetch-bench-models.sh

bench-tools: ## build the load generator, the raw baseline, the orchestrator and scorebench; install ghz when missing
	$(GO) -C bench build -o $(abspath $(BENCH_BIN))/loadgen ./loadgen
	$(GO) build -o $(BENCH_BIN)/ortbench ./cmd/ortbench
	$(GO) -C bench build -o $(abspath $(BENCH_BIN))/run ./run
	$(GO) -C bench build -o $(abspath $(BENCH_BIN))/scorebench ./score
	@test -x $(BENCH_BIN)/ghz || { echo "installing ghz $(GHZ_VERSION) into $(BENCH_BIN)"; \
		GOBIN=$(abspath $(BENCH_BIN)) $(GO) install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION); }

bench: build bench-models bench-tools ## the full suite: bench/RESULTS.md, results.json and PNG plots (15 to 20 minutes), then bench/THREADS.md and bench/SCORE.md
	$(BENCH_BIN)/run --out bench --command "make bench" $(BENCH_ARGS)
	scripts/bench-threads.sh bench/THREADS.md
	$(MAKE) bench-score

# `onnxserve score` against raw ONNX Runtime on the same model, batch size
# and thread count, alternated in one run, and its peak RSS on 100,000 and
# 1,000,000 rows. SCORE_BASELINE=<commit> also measures onnxserve built
# from that commit, in the same repetitions ("before"); SCORE_ARGS passes
# flags to bench/score (see its --help).
.PHONY: bench-score
SCORE_BASELINE ?=
SCORE_ARGS ?=
SCORE_WORK ?= .cache/bench-score
bench-score: build bench-models ## score against raw ONNX Runtime, and its peak RSS on 100k and 1M rows: bench/SCORE.md (3 to 5 minutes; not part of `make test`)
	$(GO) build -o $(BENCH_BIN)/ortbench ./cmd/ortbench
	$(GO) -C bench build -o $(abspath $(BENCH_BIN))/scorebench ./score
	@if [ -n "$(SCORE_BASELINE)" ]; then \
		echo "building onnxserve at $(SCORE_BASELINE) into $(SCORE_WORK)/onnxserve-base"; \
		rm -rf $(SCORE_WORK)/base && mkdir -p $(SCORE_WORK)/base && \
		git archive $(SCORE_BASELINE) | tar -x -C $(SCORE_WORK)/base && \
		$(GO) -C $(SCORE_WORK)/base build -o $(abspath $(SCORE_WORK))/onnxserve-base ./cmd/serve && \
		rm -rf $(SCORE_WORK)/base; \
	fi
	$(BENCH_BIN)/scorebench --server $(BIN) --ortbench $(BENCH_BIN)/ortbench --work $(SCORE_WORK) --out bench/SCORE.md \
		--command "make bench-score$(if $(SCORE_BASELINE), SCORE_BASELINE=$(SCORE_BASELINE))$(if $(SCORE_ARGS), SCORE_ARGS='$(SCORE_ARGS)')" \
		$(if $(SCORE_BASELINE),--baseline $(SCORE_WORK)/onnxserve-base --baseline-name $(SCORE_BASELINE)) $(SCORE_ARGS)

.PHONY: bench-threads
bench-threads: lib ## one busy model among four loaded, ONNX Runtime threads before and after the division: bench/THREADS.md
	scripts/bench-threads.sh bench/THREADS.md

bench-quick: build bench-models bench-tools ## one short repetition, written to .cache/bench-quick/
	$(BENCH_BIN)/run --quick --out .cache/bench-quick --command "make bench-quick" $(BENCH_ARGS)

bench-profile: build bench-models bench-tools ## CPU and allocation profiles of the server under load: bench/PROFILE.md
	$(BENCH_BIN)/run --profile --out bench --command "make bench-profile" $(BENCH_ARGS)
