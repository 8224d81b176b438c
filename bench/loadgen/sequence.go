package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inference "github.com/onnxserve/onnxserve/proto"
)

// The stateful workload: Silero VAD v5 fed 512-sample chunks of 16 kHz
// audio, one speech probability back per chunk.
const (
	workloadVAD = "silero_vad"
	// vadChunkBytes is one chunk: 512 float32 samples.
	vadChunkBytes = 512 * 4
	vadRate       = 16000
	// warmupChunks bounds the warm-up sequences, which run the first
	// chunks of each worker's audio under ids of their own.
	warmupChunks = 16
)

// vadAudio is the stateful mode's data: sequences of equal length, each
// a run of chunks.
type vadAudio struct {
	b                 []byte
	sequences, chunks int
}

// splitAudio cuts a file of float32 little-endian samples into sequences
// of whole chunks.
func splitAudio(b []byte, sequences int) (*vadAudio, error) {
	per := sequences * vadChunkBytes
	if sequences < 1 || len(b) == 0 || len(b)%per != 0 {
		return nil, fmt.Errorf("--sequence-data: %d bytes are not %d sequences of whole %d-byte chunks", len(b), sequences, vadChunkBytes)
	}
	return &vadAudio{b: b, sequences: sequences, chunks: len(b) / per}, nil
}

func (a *vadAudio) chunk(s, c int) []byte {
	off := (s*a.chunks + c) * vadChunkBytes
	return a.b[off : off+vadChunkBytes]
}

// seqStats is what one sequence worker saw; only that worker writes it
// until the run ends.
type seqStats struct {
	lat     []time.Duration
	errors  int64
	samples map[string]int64
	probs   []float32
}

func (st *seqStats) fail(err error) {
	st.errors++
	if st.samples == nil {
		st.samples = map[string]int64{}
	}
	st.samples[errorKey(err)]++
}

// seqStream sends one worker's chunks on its own ModelStreamInfer stream,
// one in flight at a time, reusing one request message. It is used by one
// goroutine.
type seqStream struct {
	stream grpc.BidiStreamingClient[inference.ModelInferRequest, inference.ModelStreamInferResponse]
	req    *inference.ModelInferRequest
	id     *inference.InferParameter_Int64Param
	start  *inference.InferParameter_BoolParam
	end    *inference.InferParameter_BoolParam
}

func newSeqStream(ctx context.Context, c inference.GRPCInferenceServiceClient, model, version string) (*seqStream, error) {
	stream, err := c.ModelStreamInfer(ctx)
	if err != nil {
		return nil, err
	}
	s := &seqStream{
		stream: stream,
		id:     &inference.InferParameter_Int64Param{},
		start:  &inference.InferParameter_BoolParam{},
		end:    &inference.InferParameter_BoolParam{},
	}
	s.req = &inference.ModelInferRequest{
		ModelName: model, ModelVersion: version,
		Parameters: map[string]*inference.InferParameter{
			"sequence_id":    {ParameterChoice: s.id},
			"sequence_start": {ParameterChoice: s.start},
			"sequence_end":   {ParameterChoice: s.end},
		},
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "input", Datatype: "FP32", Shape: []int64{1, vadChunkBytes / 4}},
			{Name: "sr", Datatype: "INT64", Shape: []int64{}},
		},
		RawInputContents: [][]byte{nil, binary.LittleEndian.AppendUint64(nil, vadRate)},
	}
	return s, nil
}

// errStream marks a broken stream: the worker stops.
var errStream = errors.New("stream")

// send sends one chunk and waits for its answer: the speech probability,
// checked to be one FP32 output in [0, 1].
func (s *seqStream) send(id int64, chunk []byte, first, last bool) (float32, error) {
	s.id.Int64Param, s.start.BoolParam, s.end.BoolParam = id, first, last
	s.req.RawInputContents[0] = chunk
	if err := s.stream.Send(s.req); err != nil {
		return 0, fmt.Errorf("%w: send: %w", errStream, err)
	}
	resp, err := s.stream.Recv()
	if err != nil {
		return 0, fmt.Errorf("%w: receive: %w", errStream, err)
	}
	if msg := resp.GetErrorMessage(); msg != "" {
		return 0, errors.New(msg)
	}
	out := resp.GetInferResponse()
	if len(out.GetOutputs()) != 1 || len(out.GetRawOutputContents()) != 1 || len(out.GetRawOutputContents()[0]) != 4 {
		return 0, fmt.Errorf("%w: want one FP32 output, got %d outputs", errVerify, len(out.GetOutputs()))
	}
	p := math.Float32frombits(binary.LittleEndian.Uint32(out.GetRawOutputContents()[0]))
	if !(p >= 0 && p <= 1) {
		return 0, fmt.Errorf("%w: speech probability %v outside [0, 1]", errVerify, p)
	}
	return p, nil
}

// close ends the stream and waits for the server to end it too.
func (s *seqStream) close() {
	if s.stream.CloseSend() == nil {
		for {
			if _, err := s.stream.Recv(); err != nil {
				return
			}
		}
	}
}

// runSequence sends chunks [0, upto) of sequence seq as sequence id and
// returns on the first error; it counts latencies and errors into st
// when st is not nil and keeps the probabilities when keep is set.
func (s *seqStream) runSequence(a *vadAudio, seq, upto int, id int64, st *seqStats, keep bool) error {
	for c := range upto {
		t := time.Now()
		p, err := s.send(id, a.chunk(seq, c), c == 0, c == upto-1)
		d := time.Since(t)
		if err != nil {
			if st != nil {
				st.fail(err)
			}
			return fmt.Errorf("sequence %d chunk %d: %w", seq, c, err)
		}
		if st != nil {
			st.lat = append(st.lat, d)
			if keep {
				st.probs = append(st.probs, p)
			}
		}
	}
	return nil
}

// runSequences is the stateful mode: every sequence of the audio at once,
// each on its own stream, one chunk in flight per sequence. Each worker
// first runs warm-up sequences (its audio's first chunks, under ids of
// their own) until o.warmup has passed; then, together, every worker runs
// its whole sequence, and the window spans from the first send to the
// last answer. A chunk that fails ends its sequence: the state it left
// would make every later answer differ.
func runSequences(ctx context.Context, o *options, events io.Writer) (*Result, error) {
	b, err := os.ReadFile(o.seqData)
	if err != nil {
		return nil, err
	}
	a, err := splitAudio(b, o.concurrency)
	if err != nil {
		return nil, err
	}
	var clients []inference.GRPCInferenceServiceClient
	for range o.conns {
		cc, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("grpc client for %s: %w", o.addr, err)
		}
		defer cc.Close()
		clients = append(clients, inference.NewGRPCInferenceServiceClient(cc))
	}
	// Ids unique to this run, so the server never takes one of them for a
	// sequence of an earlier run.
	base := time.Now().UnixNano()
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := make([]*seqStream, a.sequences)
	for i := range streams {
		if streams[i], err = newSeqStream(streamCtx, clients[i%len(clients)], o.model, o.version); err != nil {
			return nil, fmt.Errorf("stream %d: %w", i, err)
		}
	}
	defer func() {
		for _, s := range streams {
			s.close()
		}
	}()

	warmErrs := make([]error, a.sequences)
	deadline := time.Now().Add(o.warmup)
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Go(func() {
			for k := int64(1); time.Now().Before(deadline) && ctx.Err() == nil; k++ {
				id := base + k*int64(a.sequences) + int64(i)
				if err := s.runSequence(a, i, min(warmupChunks, a.chunks), id, nil, false); err != nil {
					warmErrs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(warmErrs...); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}

	stats := make([]seqStats, a.sequences)
	if o.events {
		fmt.Fprintln(events, `{"event":"start"}`)
	}
	t0 := time.Now()
	for i, s := range streams {
		wg.Go(func() {
			st := &stats[i]
			st.lat = make([]time.Duration, 0, a.chunks)
			// A failed chunk is counted in st; the sequence ends there.
			_ = s.runSequence(a, i, a.chunks, base+int64(i), st, i == 0)
		})
	}
	wg.Wait()
	t1 := time.Now()
	if o.events {
		fmt.Fprintln(events, `{"event":"end"}`)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return sequenceResult(o, a, stats, t1.Sub(t0)), nil
}

// sequenceResult sums the workers' statistics.
func sequenceResult(o *options, a *vadAudio, stats []seqStats, window time.Duration) *Result {
	r := &Result{
		Protocol: o.protocol, Model: o.model, Workload: o.workload, Concurrency: o.concurrency,
		Seconds: window.Seconds(), Sequences: a.sequences, Chunks: a.chunks, Sequence0: stats[0].probs,
	}
	var lat []time.Duration
	samples := map[string]int64{}
	for i := range stats {
		lat = append(lat, stats[i].lat...)
		r.Errors += stats[i].errors
		for k, n := range stats[i].samples {
			samples[k] += n
		}
	}
	r.ErrorSamples = commonest(samples)
	r.Requests = int64(len(lat))
	if r.Seconds > 0 {
		r.Throughput = float64(r.Requests) / r.Seconds
	}
	r.LatencyMs = summarize(lat)
	return r
}
