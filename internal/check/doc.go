// Package check is `onnxserve check`, the gate a model version passes
// before it ships: it loads every selected model and version through the
// serving core exactly as the server does (strict config, the Loader's
// session, warmup), runs each version's golden tests
// (<version>/tests/*.json) through the same request path, holds each model
// to the latency budget of its config's check block, and reports the
// outcome as text and as JUnit XML.
//
// It knows nothing of ONNX Runtime (the caller passes a serving.Loader) or
// of the wire protocols; golden tests use the v2 JSON tensor form that
// package dataset decodes.
package check
