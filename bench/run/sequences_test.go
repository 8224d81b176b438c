package main

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestVADConfig(t *testing.T) {
	tests := []struct {
		wait         bool
		wantDispatch string
	}{{false, ""}, {true, "wait"}}
	for _, tt := range tests {
		b, err := yaml.Marshal(vadConfig(tt.wait))
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			MaxBatch int `yaml:"max_batch_size"`
			DB       struct {
				Dispatch  string `yaml:"dispatch"`
				Delay     string `yaml:"max_queue_delay"`
				Preferred []int  `yaml:"preferred_batch_sizes"`
			} `yaml:"dynamic_batching"`
			Seq struct {
				State []struct {
					Input, Output string
					Axis          int `yaml:"batch_axis"`
				} `yaml:"state"`
			} `yaml:"sequence_batching"`
			Instances struct {
				Count   int `yaml:"count"`
				IntraOp int `yaml:"intra_op_threads"`
			} `yaml:"instances"`
		}
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.MaxBatch != vadMaxBatch || cfg.DB.Dispatch != tt.wantDispatch || len(cfg.Seq.State) != 1 ||
			cfg.Seq.State[0].Input != "state" || cfg.Seq.State[0].Output != "stateN" || cfg.Seq.State[0].Axis != 1 ||
			cfg.Instances.Count != 1 || cfg.Instances.IntraOp != 1 {
			t.Errorf("wait=%v: config\n%s", tt.wait, b)
		}
		if tt.wait && (cfg.DB.Delay != "2ms" || !slices.Equal(cfg.DB.Preferred, []int{vadMaxBatch})) {
			t.Errorf("wait: delay %q, preferred %v", cfg.DB.Delay, cfg.DB.Preferred)
		}
	}
}

func TestWriteVAD(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "vad.onnx")
	if err := os.WriteFile(file, []byte("onnx"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	if err := writeVAD(repo, file); err != nil {
		t.Fatal(err)
	}
	for _, v := range vadVariants {
		if b, err := os.ReadFile(filepath.Join(repo, v.name, "1", "model.onnx")); err != nil || string(b) != "onnx" {
			t.Errorf("%s: model %q, %v", v.name, b, err)
		}
		b, err := os.ReadFile(filepath.Join(repo, v.name, "config.yaml"))
		if err != nil || !strings.Contains(string(b), "sequence_batching:") || strings.Contains(string(b), "dispatch: wait") != v.wait {
			t.Errorf("%s: config %v:\n%s", v.name, err, b)
		}
	}
	if err := writeVAD(repo, filepath.Join(dir, "missing.onnx")); err == nil || !strings.Contains(err.Error(), "make vad") {
		t.Errorf("a missing model: %v", err)
	}
}

func TestVADAudio(t *testing.T) {
	a := vadAudio(3, 40)
	if len(a) != 40*vadChunk {
		t.Fatalf("%d samples", len(a))
	}
	if !slices.Equal(a, vadAudio(3, 40)) {
		t.Fatal("the audio is not deterministic")
	}
	if slices.Equal(a, vadAudio(4, 40)) {
		t.Fatal("two sequences have the same audio")
	}
	// Bursts and quiet: some chunks loud, some nearly silent, none clipped.
	loud, quiet := 0, 0
	for c := range 40 {
		peak := 0.0
		for _, v := range a[c*vadChunk : (c+1)*vadChunk] {
			peak = max(peak, math.Abs(float64(v)))
		}
		switch {
		case peak > 1:
			t.Fatalf("chunk %d peaks at %v", c, peak)
		case peak > 0.1:
			loud++
		case peak < 0.01:
			quiet++
		}
	}
	if loud == 0 || quiet == 0 {
		t.Errorf("%d loud and %d quiet chunks of 40: want both", loud, quiet)
	}
	path := filepath.Join(t.TempDir(), "audio.f32")
	if err := writeVADAudio(path, 5, 40); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 5*40*vadChunk*4 {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	// Sequence 3 starts at 3 × 40 chunks.
	off := 3 * 40 * vadChunk * 4
	if got := math.Float32frombits(binary.LittleEndian.Uint32(b[off+4*7:])); got != a[7] {
		t.Errorf("sequence 3 sample 7 in the file: %v, want %v", got, a[7])
	}
}

func TestSequenceCheck(t *testing.T) {
	want := []float32{0.01, 0.5, 0.97}
	var c sequenceCheck
	if err := c.compare("same", want, []float32{0.01, 0.5, 0.97}); err != nil {
		t.Fatal(err)
	}
	if err := c.compare("close", want, []float32{0.01, 0.5000005, 0.97}); err != nil {
		t.Fatal(err)
	}
	if c.Compared != 2 || c.Values != 6 || c.Identical != 5 || c.MaxAbsDiff == 0 || c.MaxAbsDiff > vadTolerance {
		t.Fatalf("check %+v", c)
	}
	tests := []struct {
		name    string
		got     []float32
		wantErr string
	}{
		{"beyond the tolerance", []float32{0.01, 0.5, 0.9701}, "chunk 2"},
		{"NaN", []float32{float32(math.NaN()), 0.5, 0.97}, "chunk 0"},
		{"short", []float32{0.01, 0.5}, "2 speech probabilities"},
		{"none", nil, "0 speech probabilities"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c sequenceCheck
			err := c.compare("served", want, tt.got)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "served") {
				t.Fatalf("err = %v, want one naming the run and %q", err, tt.wantErr)
			}
		})
	}
}

func TestSequencesSection(t *testing.T) {
	c := &config{concurrency: []int{1}, batchingConcurrency: []int{1}, reps: 1, vad: true, vadSequences: 64}
	r := newResults(c, nil)
	if r.SequenceCheck == nil || !slices.Contains(r.Meta.Models, vadModel) {
		t.Fatalf("results of a run with the streaming row: check %v, models %v", r.SequenceCheck, r.Meta.Models)
	}
	var b strings.Builder
	r.sequencesSection(&b)
	if b.Len() != 0 {
		t.Fatalf("a section before anything was measured: %q", b.String())
	}
	for bs, ips := range map[int]float64{1: 6_000, 2: 12_000, 4: 18_000, 8: 21_000, 16: 24_000} {
		r.add(pointKey{Model: vadModel, Mode: modeRaw, Batch: bs}, sample{Throughput: ips, P50Ms: 0.1, P99Ms: 0.3, ServerCPUPer1k: 1 / ips * 1000, MeanBatch: float64(bs)})
	}
	r.add(pointKey{Model: vadModel, Mode: modeStream, Concurrency: 64}, sample{Throughput: 9_000, P50Ms: 7, P99Ms: 15, ServerCPUPer1k: 0.11, MeanBatch: 2})
	r.add(pointKey{Model: vadModel, Mode: modeStreamWait, Concurrency: 64}, sample{Throughput: 15_000, P50Ms: 4, P99Ms: 9, ServerCPUPer1k: 0.066, MeanBatch: 16, OtherCores: 2})
	*r.SequenceCheck = sequenceCheck{Sequences: 64, Chunks: 256, Compared: 7, Values: 1792, Identical: 1792, Commands: []string{"ortbench --x", "loadgen --y"}}
	b.Reset()
	r.sequencesSection(&b)
	md := b.String()
	for _, want := range []string{
		"## Streaming sequences (Silero VAD v5)",
		"64 sequences of 256 chunks each (512 samples, 32 ms of 16 kHz audio: 8.192s per sequence)",
		"| batch 16 | 24,000 | 0.100 / 0.300 | 0.0417 |",
		"| onnxserve-grpc-stream | 9,000 | 7.00 / 15.00 | 0.1100 | 2.00 | 1.50× | 38% | 75% |",
		"| onnxserve-grpc-stream-wait † | 15,000 | 4.00 / 9.00 | 0.0660 | 16.00 | 2.50× | 62% | 62% |",
		"† every repetition",
		"the largest difference was 0; 1792 of 1792 values bit-identical",
		"ortbench --x\nloadgen --y",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
}

func TestParseConfigStreamingRow(t *testing.T) {
	c, err := parseConfig([]string{"--models", "classifier,silero_vad", "--vad-sequences", "8"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.vad || !slices.Equal(c.models, []string{"classifier"}) || c.vadSequences != 8 || c.vadChunks != 256 {
		t.Fatalf("config: vad %v, models %v, %d sequences of %d chunks", c.vad, c.models, c.vadSequences, c.vadChunks)
	}
	if c, err = parseConfig([]string{"--models", "simple"}); err != nil || c.vad {
		t.Fatalf("without the row: vad %v, %v", c.vad, err)
	}
	if c, err = parseConfig([]string{"--quick"}); err != nil || !c.vad || c.vadChunks != 64 {
		t.Fatalf("quick: %v", err)
	}
	if _, err := parseConfig([]string{"--vad-chunks", "0"}); err == nil {
		t.Fatal("zero chunks accepted")
	}
}
