// Command serve builds the onnxserve binary: one binary, with subcommands
// (commands.go holds the table). serve, the default, is the server: it
// reads flags and the model repository, joins ONNX Runtime to the serving
// core, starts the HTTP, gRPC and metrics front ends and shuts them down in
// order on SIGTERM; `onnxserve --http-port 0` is `onnxserve serve
// --http-port 0`. The offline commands to come (check, score, profile,
// export) are entries of the same table, each a thin shell over an
// internal package. This is also where taps on the serving core are
// registered.
package main
