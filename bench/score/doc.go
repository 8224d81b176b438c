// Command scorebench measures `onnxserve score`, the offline batch
// scorer, against raw ONNX Runtime (cmd/ortbench, the suite's baseline: one
// session run back to back) on the same model, batch size and thread
// count, and the peak RSS of score on 100,000 and 1,000,000 rows; it writes
// bench/SCORE.md.
//
//	.cache/bin/scorebench --out bench/SCORE.md    # `make bench-score`
//	.cache/bin/scorebench --baseline /tmp/onnxserve-main --baseline-name main
//
// Throughput: every program runs pinned to one CPU (taskset) with one ONNX
// Runtime thread (score --workers 1, ortbench --intra-op-threads 1), so
// score gets exactly the CPU raw ONNX Runtime gets and all of its own work
// (reading, parsing, batching, encoding, writing, checkpoints) shows. Each
// repetition runs, back to back: the raw baseline, score on a file of one
// batch (its fixed cost: process start, model load, warmup), score on the
// whole file, the same two for --baseline when given (the two builds take
// turns going first), and the raw baseline again; the mean of the two raw
// runs is the repetition's raw rate. Score's rate is
// its marginal one, (rows - one batch) / (wall time - the one batch's wall
// time); the end-to-end rate (rows / wall time) is reported beside it.
// Each run's disturbance is measured: CPU time other processes used on the
// pinned CPU (/proc/stat, less the run's own rusage); a disturbed
// repetition is run again, within a budget, and medians leave disturbed
// ones out.
//
// Memory: score runs with its defaults (every CPU) on 100,000 and
// 1,000,000 rows of the bundled classifier, per format, and its peak RSS
// is the kernel's high-water mark (wait4's ru_maxrss, what VmHWM and
// /usr/bin/time -v report).
//
// It generates its inputs in its work folder and removes them at the end.
// It treats onnxserve and ortbench as black boxes and imports nothing from
// this module.
package main
