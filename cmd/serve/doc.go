// Command serve is the onnxserve server: it reads flags and the model
// repository, joins ONNX Runtime to the serving core, starts the HTTP, gRPC
// and metrics front ends and shuts them down in order on SIGTERM.
package main
