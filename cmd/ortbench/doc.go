// Command ortbench is the raw ONNX Runtime baseline of the benchmark suite:
// it loads one model with the server's own runtime package and runs it in a
// tight loop, one batch after another, for each batch size asked for, and
// prints items per second, per-batch latency and CPU time per item as JSON.
//
//	ortbench --model .cache/bench-models/ocr_cls.onnx --batch-sizes 1,2,4,8,16 --dims x=3x48x192
//
// With --sequence-data it runs a stateful model the way a streaming client
// calling ONNX Runtime itself would: every sequence of the file chunk by
// chunk, the sequences of a batch in lockstep, the state the model returns
// fed back with the next chunk, and prints chunks per second and sequence
// 0's outputs, the reference a served run is checked against:
//
//	ortbench --model silero_vad.onnx --sequence-data audio.f32 --sequences 64 --batch-sizes 1,16 \
//	    --dims input=512 --state 'state=stateN@1' --value sr=16000
//
// It is what "calling ONNX Runtime yourself" costs, so the server's numbers
// can be compared with it at the same batch size. It knows nothing of
// requests, batching or wire formats.
package main
