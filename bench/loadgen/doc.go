// Command loadgen drives one model of a running onnxserve with a fixed load
// and prints what it measured as JSON: successful inferences per second,
// latency percentiles and the errors seen.
//
//	loadgen --protocol grpc --addr 127.0.0.1:8001 --workload simple --concurrency 32 --warmup 1s --duration 5s
//
// It speaks the three wire forms a client uses: gRPC with
// raw_input_contents, HTTP JSON, and HTTP with the binary tensor extension.
// By default it runs closed-loop (each of --concurrency workers sends its
// next request when the previous one is answered); with --rate it sends at
// a fixed rate, and a request that found every worker busy at its scheduled
// time has its latency measured from that time, so a slow server cannot hide
// its queueing by slowing the client down.
//
// Every response is checked (the arithmetic of simple, softmax rows that sum
// to one and answers that match the first one seen for the same input), and
// inputs differ between requests, so an answer carrying another request's
// rows is counted as an error. With --events it prints {"event":"start"}
// and {"event":"end"} lines when the measured window opens and closes, so a
// caller can sample the server exactly over that window.
//
// The silero_vad workload is stateful: with --sequence-data (a file of
// 16 kHz float32 audio) it runs --concurrency sequences of 512-sample
// chunks at once, each on its own ModelStreamInfer stream with
// sequence_id, sequence_start and sequence_end, one chunk in flight per
// sequence, and prints the speech probabilities of sequence 0 with the
// result, so a caller can check them against ONNX Runtime run directly.
//
// It talks to the server only over the wire and knows nothing of its
// internals; from this module it imports only the generated protocol code.
package main
