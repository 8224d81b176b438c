// Package onnxgen builds ONNX ModelProto bytes for the bundled model
// repository and for tests of other packages.
//
// It owns a small graph builder (Graph) that encodes the ONNX protobuf wire
// format directly, plus ready-made models (Simple, SimpleString, Classifier,
// Identity, AddConst) whose behaviour tests can predict exactly. It knows
// nothing of ONNX Runtime, of the serving stack or of the repository layout:
// it only turns a graph description into bytes.
package onnxgen
