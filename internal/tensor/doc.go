// Package tensor holds the data types, shapes and raw buffers that travel
// between the front ends, the batcher and ONNX Runtime. It validates tensors
// against a model's declared inputs and concatenates and splits them along the
// batch dimension. It does no I/O and knows nothing of wire formats beyond the
// v2 raw layout it uses as its own in-memory representation.
package tensor
