// Package score is `onnxserve score`: batch inference over a data file
// with a model version loaded exactly as the server loads it (its config,
// the Loader's session, warmup; serving.Open). It reads records as a
// stream (package dataset), runs large batches on every CPU, and writes
// one output row per good input row in input order, with bad rows in
// <output>.errors.jsonl.
//
// The run is resumable: results go to <output>.parts/ as numbered chunks,
// each made durable (written, fsynced, renamed) before the next counts as
// done, so after a crash or kill `Resume` continues from the last complete
// chunk. The output file is assembled from the chunks at the end, by one
// streaming writer, so a resumed run's output is byte for byte that of an
// uninterrupted one.
//
// It knows nothing of ONNX Runtime (the caller passes a serving.Loader) or
// of the server's front ends.
package score
