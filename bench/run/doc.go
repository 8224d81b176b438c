// Command run is the benchmark suite's orchestrator. It builds a model
// repository of the benchmark's variants (each bundled model with dynamic
// batching as configured and a copy with it off, copies with drift
// monitoring and with the model-quality loop on where the bundled model
// has a profile or a monitoring block, plus PaddleOCR's direction
// classifier and Silero VAD v5 served as a stateful model), starts
// onnxserve pinned to one core, drives it with bench/loadgen (and ghz for
// simple over gRPC) pinned to the other, runs the raw ONNX Runtime
// baseline (cmd/ortbench, stateful for Silero VAD) on the server's core,
// ends by profiling the same server under the top load to break its CPU
// per inference down by kind of work, and writes RESULTS.md, results.json
// and PNG plots.
//
//	.cache/bin/run --out bench          # the full suite; `make bench`
//	.cache/bin/run --quick --out .cache/bench-quick
//	.cache/bin/run --profile --out bench  # PROFILE.md; `make bench-profile`
//	.cache/bin/run --report-from bench/results.json --out bench  # the report again, no measuring
//	.cache/bin/run --models silero_vad --out /tmp/vad   # the streaming row alone
//
// It runs from the repository root, where its default paths point; bench/
// is a Go module of its own, so `make bench-tools` builds it (and the tools
// it drives) into .cache/bin.
//
// For every measured window it reads the server process's CPU time from
// /proc/<pid>/stat and the batch-size and compute-time histograms from
// /metrics, so CPU per inference and the mean batch size cover exactly the
// requests counted. It also reads the whole machine's CPU time, so load
// from other processes during a window is reported rather than hidden: a
// disturbed window is measured again once the machine quietens (within a
// time budget), and medians leave disturbed repetitions out.
//
// Every process it starts listens on or talks to 127.0.0.1 only, and is
// stopped when the suite ends, fails or is interrupted. It treats the
// server as a black box and imports nothing from this module.
package main
