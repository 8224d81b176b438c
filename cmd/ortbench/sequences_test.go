package main

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/runtime"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// sileroSpecs are Silero VAD v5's inputs and outputs as the runtime
// reports them.
var (
	sileroIns = []tensor.Spec{
		{Name: "input", DataType: tensor.FP32, Shape: []int64{-1, -1}},
		{Name: "state", DataType: tensor.FP32, Shape: []int64{2, -1, 128}},
		{Name: "sr", DataType: tensor.Int64, Shape: []int64{}},
	}
	sileroOuts = []tensor.Spec{
		{Name: "output", DataType: tensor.FP32, Shape: []int64{-1, 1}},
		{Name: "stateN", DataType: tensor.FP32, Shape: []int64{2, -1, 128}},
	}
)

func TestParseStatefulOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, o *options)
	}{
		{name: "silero", args: []string{"--model", "m", "--sequence-data", "a.f32", "--sequences", "64", "--state", "state=stateN@1", "--value", "sr=16000"},
			check: func(t *testing.T, o *options) {
				if o.seqData != "a.f32" || o.sequences != 64 || !slices.Equal(o.states, []stateSpec{{"state", "stateN", 1}}) || o.values["sr"] != "16000" {
					t.Fatalf("options %+v", o)
				}
			}},
		{name: "two states, default axis", args: []string{"--model", "m", "--sequence-data", "a", "--state", "h=hn; c=cn@2"},
			check: func(t *testing.T, o *options) {
				if !slices.Equal(o.states, []stateSpec{{"h", "hn", 0}, {"c", "cn", 2}}) {
					t.Fatalf("states %+v", o.states)
				}
			}},
		{name: "no state", args: []string{"--model", "m", "--sequence-data", "a"}, wantErr: "at least one --state"},
		{name: "state without data", args: []string{"--model", "m", "--state", "a=b"}, wantErr: "stateful mode only"},
		{name: "zero sequences", args: []string{"--model", "m", "--sequence-data", "a", "--state", "a=b", "--sequences", "0"}, wantErr: "--sequences"},
		{name: "bad state", args: []string{"--model", "m", "--sequence-data", "a", "--state", "ab"}, wantErr: "input=output"},
		{name: "bad axis", args: []string{"--model", "m", "--sequence-data", "a", "--state", "a=b@-1"}, wantErr: "axis"},
		{name: "bad value", args: []string{"--model", "m", "--sequence-data", "a", "--state", "a=b", "--value", "sr"}, wantErr: "name=number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}

func TestSeqPlan(t *testing.T) {
	silero := []stateSpec{{"state", "stateN", 1}}
	p, err := newSeqPlan(sileroIns, sileroOuts, silero, map[string]string{"sr": "16000"}, map[string][]int64{"input": {512}})
	if err != nil {
		t.Fatal(err)
	}
	if p.stream != 0 || !slices.Equal(p.row, []int64{512}) || p.rowBytes != 2048 || p.record != 0 || len(p.states) != 1 || p.states[0].in != 1 || p.states[0].out != 1 {
		t.Fatalf("plan %+v", p)
	}
	if sr := p.fixed[2]; binary.LittleEndian.Uint64(sr.Data) != 16000 || len(sr.Shape) != 0 {
		t.Fatalf("sr %+v", sr)
	}
	tests := []struct {
		name    string
		states  []stateSpec
		values  map[string]string
		dims    map[string][]int64
		wantErr string
	}{
		{"no such output", []stateSpec{{"state", "h", 1}}, map[string]string{"sr": "1"}, map[string][]int64{"input": {512}}, "no output"},
		{"axis beyond rank", []stateSpec{{"state", "stateN", 3}}, map[string]string{"sr": "1"}, map[string][]int64{"input": {512}}, "along axis 3"},
		{"open dimension off the axis", []stateSpec{{"state", "stateN", 0}}, map[string]string{"sr": "1"}, map[string][]int64{"input": {512}}, "dimension 1"},
		{"two streamed inputs", silero, nil, map[string][]int64{"input": {512}}, "exactly one"},
		{"value on a state", silero, map[string]string{"sr": "1", "state": "0"}, map[string][]int64{"input": {512}}, "no such input, or it is a state"},
		{"value not a number", silero, map[string]string{"sr": "16k"}, map[string][]int64{"input": {512}}, "not a INT64"},
		{"chunk length open", silero, map[string]string{"sr": "1"}, nil, "--dims input"},
		{"wrong dims", silero, map[string]string{"sr": "1"}, map[string][]int64{"input": {1, 512}}, "2 dimensions given"},
		{"stream is a value", silero, map[string]string{"sr": "1", "input": "0"}, nil, "not one element"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newSeqPlan(sileroIns, sileroOuts, tt.states, tt.values, tt.dims)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestValueBytes(t *testing.T) {
	tests := []struct {
		dt   tensor.DataType
		v    string
		want []byte
	}{
		{tensor.Int64, "16000", binary.LittleEndian.AppendUint64(nil, 16000)},
		{tensor.Int32, "-2", []byte{0xfe, 0xff, 0xff, 0xff}},
		{tensor.Uint8, "255", []byte{255}},
		{tensor.FP32, "0.5", binary.LittleEndian.AppendUint32(nil, math.Float32bits(0.5))},
		{tensor.FP64, "2", binary.LittleEndian.AppendUint64(nil, math.Float64bits(2))},
	}
	for _, tt := range tests {
		got, err := valueBytes(tt.dt, tt.v)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("valueBytes(%s, %q) = %v, %v; want %v", tt.dt, tt.v, got, err, tt.want)
		}
	}
	for _, bad := range []struct {
		dt tensor.DataType
		v  string
	}{{tensor.Uint8, "256"}, {tensor.Int8, "-129"}, {tensor.Uint16, "-1"}, {tensor.FP32, "x"}, {tensor.Bytes, "1"}} {
		if _, err := valueBytes(bad.dt, bad.v); err == nil {
			t.Errorf("valueBytes(%s, %q) accepted", bad.dt, bad.v)
		}
	}
}

func TestSplitSeqData(t *testing.T) {
	b := make([]byte, 3*4*8) // 3 sequences of 4 chunks of 8 bytes
	for i := range b {
		b[i] = byte(i / 8)
	}
	d, err := splitSeqData(b, 3, 8)
	if err != nil {
		t.Fatal(err)
	}
	if d.chunks != 4 || d.chunk(0, 0)[0] != 0 || d.chunk(1, 0)[0] != 4 || d.chunk(2, 3)[0] != 11 || len(d.chunk(2, 3)) != 8 {
		t.Fatalf("data %d chunks, chunk(2,3) %v", d.chunks, d.chunk(2, 3))
	}
	for _, bad := range []struct{ n, seqs, row int }{{96, 5, 8}, {96, 3, 7}, {0, 1, 8}, {96, 0, 8}} {
		if _, err := splitSeqData(make([]byte, bad.n), bad.seqs, bad.row); err == nil {
			t.Errorf("%d bytes as %d sequences of %d-byte chunks accepted", bad.n, bad.seqs, bad.row)
		}
	}
}

// TestStatefulSilero runs Silero VAD v5 for real, when `make vad` has
// fetched it: sequence 0's speech probabilities at batch sizes 1 and 3
// equal a plain loop that carries the state chunk by chunk.
func TestStatefulSilero(t *testing.T) {
	model := os.Getenv("ONNXSERVE_SILERO_VAD")
	if model == "" {
		model = filepath.Join("..", "..", ".cache", "models", "silero_vad", "silero_vad.onnx")
	}
	_, libErr := runtime.ResolveLibrary("")
	_, modelErr := os.Stat(model)
	if libErr != nil || modelErr != nil {
		if os.Getenv("ONNXSERVE_REQUIRE_ORT") == "1" {
			t.Fatal(libErr, modelErr)
		}
		t.Skip(libErr, modelErr)
	}
	const sequences, chunks = 4, 12
	audio := make([]byte, 0, sequences*chunks*512*4)
	for i := range sequences * chunks * 512 {
		v := 0.3 * math.Sin(float64(i)/9) * math.Abs(math.Sin(float64(i)/3000))
		audio = binary.LittleEndian.AppendUint32(audio, math.Float32bits(float32(v)))
	}
	path := filepath.Join(t.TempDir(), "audio.f32")
	if err := os.WriteFile(path, audio, 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := parseOptions([]string{"--model", model, "--sequence-data", path, "--sequences", "4", "--batch-sizes", "1,3",
		"--dims", "input=512", "--state", "state=stateN@1", "--value", "sr=16000", "--warmup", "10ms"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sequences != sequences || res.Chunks != chunks || len(res.Points) != 2 {
		t.Fatalf("result %+v", res)
	}
	for _, p := range res.Points {
		if want := (sequences + p.BatchSize - 1) / p.BatchSize * chunks; p.Runs != want || p.ItemsPerSec <= 0 || len(p.Sequence0) != chunks {
			t.Errorf("batch %d: %d runs (want %d), %v items/s, %d outputs of sequence 0", p.BatchSize, p.Runs, want, p.ItemsPerSec, len(p.Sequence0))
		}
	}

	if _, err := runtime.Init(libPath(t)); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = runtime.Shutdown() }()
	sess, err := runtime.Load(model, runtime.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	state := tensor.Tensor{Name: "state", DataType: tensor.FP32, Shape: []int64{2, 1, 128}, Data: make([]byte, 2*128*4)}
	sr := tensor.Tensor{Name: "sr", DataType: tensor.Int64, Shape: []int64{}, Data: binary.LittleEndian.AppendUint64(nil, 16000)}
	for c := range chunks {
		in := tensor.Tensor{Name: "input", DataType: tensor.FP32, Shape: []int64{1, 512}, Data: audio[c*2048 : (c+1)*2048]}
		out, err := sess.Run(context.Background(), []tensor.Tensor{in, state, sr})
		if err != nil {
			t.Fatal(err)
		}
		want := math.Float32frombits(binary.LittleEndian.Uint32(out[0].Data))
		for _, p := range res.Points {
			if p.Sequence0[c] != want {
				t.Fatalf("batch %d chunk %d: %v, a plain loop %v", p.BatchSize, c, p.Sequence0[c], want)
			}
		}
		state = tensor.Tensor{Name: "state", DataType: tensor.FP32, Shape: out[1].Shape, Data: out[1].Data}
	}
}

func libPath(t *testing.T) string {
	t.Helper()
	p, err := runtime.ResolveLibrary("")
	if err != nil {
		t.Fatal(err)
	}
	return p
}
