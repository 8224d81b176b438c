// Package score is `onnxserve score`: batch inference over a data file
// with a model version loaded exactly as the server loads it (its config,
// the Loader's session, warmup; serving.Open). It reads records as a
// stream (package dataset), runs large batches on every CPU, and writes
// one output row per good input row in input order, with bad rows in
// <output>.errors.jsonl.
//
// The pipeline: a reader goroutine decodes records straight into the
// buffers of a batch (dataset.Reader.NextAppend), workers run batches and
// encode their output rows (dataset.RowEncoder, for JSON lines and CSV),
// and the caller's goroutine writes them in input order. Batches are
// recycled, so batching, running and writing allocate nothing per row
// (what a reader allocates depends on its format), and the queues
// between the stages are bounded, so memory stays flat.
//
// The run is resumable: results also go to <output>.parts/ as numbered
// chunks, each made durable (written, fsynced, renamed) before the next
// counts as done, so after a crash or kill `Resume` continues from the
// last complete chunk. The output file is written beside its final name
// as rows are scored, after the rows of the chunks an earlier run
// completed, which are read back first; NPY, whose header counts the rows,
// is written from the chunks at the end. Either way one writer sees every
// row in order, so a resumed run's output is byte for byte that of an
// uninterrupted one, and the file is renamed into place only when
// complete.
//
// It knows nothing of ONNX Runtime (the caller passes a serving.Loader) or
// of the server's front ends.
package score
