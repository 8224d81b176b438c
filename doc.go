// Package onnxserve is the root of the onnxserve module: a high-throughput
// inference server for ONNX models that speaks the KServe v2 (Open Inference)
// protocol over HTTP and gRPC. The server is cmd/serve; this package holds
// only the tests that keep the package boundaries as DESIGN.md draws them,
// across this module and the two beside it (bench/ and deploy/, whose
// dependencies stay out of the server's go.mod).
package onnxserve
