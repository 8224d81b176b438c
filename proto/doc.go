// Package inference holds the Open Inference Protocol ("KServe v2") gRPC
// service, GRPCInferenceService, and its messages, generated from
// inference.proto by generate.sh; the generated files are committed so that a
// build needs no protoc.
//
// The package owns the wire contract only: message and field names and
// numbers are those every existing v2 client sends, and must never change. It
// knows nothing of tensors, models, batching or the server that implements
// the service (internal/transport/grpcapi), and imports nothing of this
// module.
//
// Generated messages are plain structs: safe for concurrent reads, not for
// concurrent mutation, and, like every protobuf-go message, not to be copied
// by value.
package inference

//go:generate bash generate.sh
