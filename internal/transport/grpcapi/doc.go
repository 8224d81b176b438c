// Package grpcapi is the gRPC front end (port 8001): the Open Inference
// Protocol service inference.GRPCInferenceService, the standard
// grpc.health.v1.Health service and server reflection, behind interceptors
// that turn a handler panic into INTERNAL instead of a crashed process,
// scrub host paths from status messages and check the inference token.
// Over its connection limit it answers the first call of a new connection
// with RESOURCE_EXHAUSTED naming the limit, then sends GOAWAY.
//
// It owns the conversion between protocol messages and tensor values
// (raw_input_contents and typed contents in, raw_output_contents out), the
// ordering of ModelStreamInfer answers, the wire codec (protobuf, with
// tensor payloads kept out of protobuf's copies and the common message
// shapes encoded directly), and the graceful stop of the gRPC server.
// Errors get their codes from the one table in package transport; the
// defences (management access through guard.AuthorizeAdmin, tokens, rate,
// connection and size limits) come from package guard.
//
// It must not know how models are loaded, batched, routed or run: it sees the
// serving core only through the small Backend interface, which
// *serving.Server satisfies.
package grpcapi
