package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	inference "github.com/onnxserve/onnxserve/proto"
)

// fakeVAD keeps a state per sequence, as the server does, and answers
// each chunk with a probability that depends on every chunk before it in
// its sequence. failEvery > 0 answers every failEvery-th chunk with an
// error message instead.
type fakeVAD struct {
	inference.UnimplementedGRPCInferenceServiceServer
	failEvery int

	mu     sync.Mutex
	state  map[int64]float64
	chunks int
	ended  int
}

// vadStep is the fake model: the new state and the probability.
func vadStep(state float64, chunk []byte) (float64, float32) {
	state = 0.5*state + float64(math.Float32frombits(binary.LittleEndian.Uint32(chunk)))
	return state, float32(1 / (1 + math.Exp(-state)))
}

func (f *fakeVAD) answer(req *inference.ModelInferRequest) (float32, error) {
	p := req.GetParameters()
	id, start, end := p["sequence_id"].GetInt64Param(), p["sequence_start"].GetBoolParam(), p["sequence_end"].GetBoolParam()
	if len(req.GetRawInputContents()) != 2 || len(req.GetRawInputContents()[0]) != vadChunkBytes ||
		binary.LittleEndian.Uint64(req.GetRawInputContents()[1]) != vadRate || req.GetInputs()[0].GetName() != "input" {
		return 0, errors.New("bad inputs")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	state, active := f.state[id]
	switch {
	case id == 0:
		return 0, errors.New("no sequence_id")
	case start && active:
		return 0, fmt.Errorf("sequence %d is active", id)
	case !start && !active:
		return 0, fmt.Errorf("sequence %d is unknown", id)
	case start:
		state = 0
	}
	f.chunks++
	if f.failEvery > 0 && f.chunks%f.failEvery == 0 {
		return 0, errors.New("model failed")
	}
	state, prob := vadStep(state, req.GetRawInputContents()[0])
	if end {
		delete(f.state, id)
		f.ended++
	} else {
		f.state[id] = state
	}
	return prob, nil
}

func (f *fakeVAD) ModelStreamInfer(stream grpc.BidiStreamingServer[inference.ModelInferRequest, inference.ModelStreamInferResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &inference.ModelStreamInferResponse{}
		if p, err := f.answer(req); err != nil {
			resp.ErrorMessage = err.Error()
		} else {
			resp.InferResponse = &inference.ModelInferResponse{
				ModelName:         req.GetModelName(),
				Outputs:           []*inference.ModelInferResponse_InferOutputTensor{{Name: "output", Datatype: "FP32", Shape: []int64{1, 1}}},
				RawOutputContents: [][]byte{binary.LittleEndian.AppendUint32(nil, math.Float32bits(p))},
			}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func startVAD(t *testing.T, f *fakeVAD) string {
	t.Helper()
	f.state = map[int64]float64{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	inference.RegisterGRPCInferenceServiceServer(s, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

// writeAudio writes sequences × chunks chunks whose first sample is
// s + c/10 and returns the path.
func writeAudio(t *testing.T, sequences, chunks int) (string, []byte) {
	t.Helper()
	b := make([]byte, sequences*chunks*vadChunkBytes)
	for s := range sequences {
		for c := range chunks {
			binary.LittleEndian.PutUint32(b[(s*chunks+c)*vadChunkBytes:], math.Float32bits(float32(s)+float32(c)/10))
		}
	}
	path := filepath.Join(t.TempDir(), "audio.f32")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b
}

func TestSplitAudio(t *testing.T) {
	b := make([]byte, 3*5*vadChunkBytes)
	a, err := splitAudio(b, 3)
	if err != nil || a.chunks != 5 || len(a.chunk(2, 4)) != vadChunkBytes {
		t.Fatalf("audio %+v, %v", a, err)
	}
	for _, bad := range []struct{ n, seqs int }{{len(b), 4}, {len(b) - 4, 3}, {0, 1}} {
		if _, err := splitAudio(make([]byte, bad.n), bad.seqs); err == nil {
			t.Errorf("%d bytes as %d sequences accepted", bad.n, bad.seqs)
		}
	}
}

func TestParseOptionsSequences(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"silero", []string{"--workload", "silero_vad", "--sequence-data", "a.f32", "--concurrency", "64"}, false},
		{"workload without data", []string{"--workload", "silero_vad"}, true},
		{"data without the workload", []string{"--workload", "simple", "--sequence-data", "a.f32"}, true},
		{"over HTTP", []string{"--workload", "silero_vad", "--sequence-data", "a", "--protocol", "http-json"}, true},
		{"open loop", []string{"--workload", "silero_vad", "--sequence-data", "a", "--rate", "100"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && o.model != "silero_vad" {
				t.Fatalf("model %q, want the workload's name", o.model)
			}
		})
	}
}

func TestRunSequences(t *testing.T) {
	const sequences, chunks = 6, 20
	path, audio := writeAudio(t, sequences, chunks)
	f := &fakeVAD{}
	o := &options{protocol: protoGRPC, addr: startVAD(t, f), model: "silero_vad", workload: workloadVAD, concurrency: sequences,
		conns: 2, warmup: 30 * time.Millisecond, duration: time.Second, events: true, seqData: path}
	var events strings.Builder
	res, err := run(context.Background(), o, &events)
	if err != nil {
		t.Fatal(err)
	}
	if got := events.String(); got != "{\"event\":\"start\"}\n{\"event\":\"end\"}\n" {
		t.Fatalf("events %q", got)
	}
	if res.Requests != sequences*chunks || res.Errors != 0 || res.Sequences != sequences || res.Chunks != chunks || res.Throughput <= 0 {
		t.Fatalf("result %+v", res)
	}
	if res.LatencyMs.P50 <= 0 || res.LatencyMs.P99 < res.LatencyMs.P50 {
		t.Fatalf("latencies %+v", res.LatencyMs)
	}
	state := 0.0
	for c := range chunks {
		var want float32
		state, want = vadStep(state, audio[c*vadChunkBytes:])
		if res.Sequence0[c] != want {
			t.Fatalf("sequence 0 chunk %d: %v, want %v", c, res.Sequence0[c], want)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.state) != 0 || f.ended < sequences {
		t.Errorf("%d sequences left active, %d ended: every warm-up and measured sequence must end", len(f.state), f.ended)
	}
}

func TestRunSequencesCountsFailures(t *testing.T) {
	const sequences, chunks = 4, 10
	path, _ := writeAudio(t, sequences, chunks)
	f := &fakeVAD{failEvery: 7}
	o := &options{protocol: protoGRPC, addr: startVAD(t, f), model: "silero_vad", workload: workloadVAD, concurrency: sequences,
		conns: 1, duration: time.Second, seqData: path}
	res, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Chunks 7, 14, 21, ... of the 40 fail, and each failure ends its
	// sequence, so fewer than 40 - 5 chunks are answered.
	if res.Errors == 0 || res.Requests+res.Errors >= sequences*chunks || res.ErrorSamples["model failed"] != res.Errors {
		t.Fatalf("result %+v", res)
	}
}

func TestRunSequencesWarmupFailure(t *testing.T) {
	path, _ := writeAudio(t, 2, 10)
	o := &options{protocol: protoGRPC, addr: startVAD(t, &fakeVAD{failEvery: 1}), model: "silero_vad", workload: workloadVAD,
		concurrency: 2, conns: 1, warmup: time.Second, duration: time.Second, seqData: path}
	if _, err := run(context.Background(), o, io.Discard); err == nil || !strings.Contains(err.Error(), "warm-up") {
		t.Fatalf("err = %v, want the warm-up's failure", err)
	}
}
