// Package runtime runs ONNX models with ONNX Runtime. It owns loading the
// shared library, creating and closing sessions (execution provider, thread
// counts, graph optimisation level), reading a model's declared inputs and
// outputs, and converting between tensor.Tensor and ONNX Runtime values.
//
// It is the only package that imports the cgo binding to ONNX Runtime, so
// nothing else in the server needs a C toolchain to be tested. It knows
// nothing of requests, batching, routing or wire formats: a Session takes
// whole tensors in and gives whole tensors back. Its caller owns the input
// checks (names, datatypes, shapes, declared order); at the cgo boundary
// Run keeps only the count and buffer-length guard that keeps ONNX Runtime
// inside Go memory.
package runtime
