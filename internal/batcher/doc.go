// Package batcher groups concurrent requests for one model version into
// micro-batches and runs them through a Runner.
//
// It owns the per-version request queue and everything that happens in it:
// admission and backpressure (a bounded queue that fails fast), per-request
// queue deadlines, the batching policy (maximum batch size, maximum queue
// delay, preferred batch sizes, one batch per input layout), stacking inputs
// along the batch dimension and cutting outputs back into per-request views,
// the parallel execution instances, draining on Close, and the queue metrics.
//
// It knows nothing about wire formats, model files, ONNX Runtime or routing:
// requests arrive as tensor values and a batch leaves through the one-method
// Runner interface. It does not check inputs against a model: its caller
// hands them over valid and in one fixed order (the model's), and the
// batcher checks only what batching needs (rows). SubmitTimed reports a
// request's queue wait and its batch's run time for the caller's records.
//
// Inputs and outputs are stacked along their own axis (Config.InputAxes,
// OutputAxes): the first by default, a recurrent state's batch axis, or
// none for a scalar that the requests of a batch share. Sequences is the
// sequence batcher's store: which sequences are active and on which version,
// their stored state, the turn that runs one sequence's requests in order,
// idle expiry and the max_sequences bound. It too moves tensors only; the
// serving core decides what the states feed.
package batcher
