package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The streaming row: Silero VAD v5 served with sequence_batching, many
// sequences at once over gRPC ModelStreamInfer streams, against ONNX
// Runtime run directly on the same audio (cmd/ortbench's stateful mode).
const (
	// vadModel names the row in --models and the points.
	vadModel = "silero_vad"
	// modeStream is the model served with dispatch immediate (the
	// default), modeStreamWait with dispatch wait.
	modeStream     = "onnxserve-grpc-stream"
	modeStreamWait = "onnxserve-grpc-stream-wait"
	// vadChunk is the samples of one chunk: 32 ms at 16 kHz.
	vadChunk      = 512
	vadSampleRate = 16000
	// vadMaxBatch is the served copies' max_batch_size and the largest
	// raw batch size.
	vadMaxBatch = 16
	// vadWaitDelay is the dispatch: wait copy's max_queue_delay.
	vadWaitDelay = 2 * time.Millisecond
	// vadTolerance is the largest difference allowed between a speech
	// probability served and the one ONNX Runtime gives alone.
	vadTolerance = 1e-6
)

// vadRawSizes are the batch sizes the raw baseline runs the sequences at.
var vadRawSizes = []int{1, 2, 4, 8, vadMaxBatch}

// vadVariant is one served copy of Silero VAD.
type vadVariant struct {
	name, mode string
	wait       bool
}

// vadVariants are the served copies, measured in this order.
var vadVariants = []vadVariant{{vadModel, modeStream, false}, {vadModel + "_wait", modeStreamWait, true}}

// vadConfig is a served copy's config.yaml: batches of up to vadMaxBatch
// sequences, the state carried along axis 1 of Silero's [2, N, 128] state,
// one instance with one intra-op thread; with wait, the oldest queued
// chunk waits up to vadWaitDelay for a full batch.
func vadConfig(wait bool) map[string]any {
	db := map[string]any{"max_queue_size": 1024}
	if wait {
		db["dispatch"] = "wait"
		db["max_queue_delay"] = vadWaitDelay.String()
		db["preferred_batch_sizes"] = []int{vadMaxBatch}
	}
	return map[string]any{
		"max_batch_size":   vadMaxBatch,
		"dynamic_batching": db,
		"sequence_batching": map[string]any{
			"state": []map[string]any{{"input": "state", "output": "stateN", "batch_axis": 1, "initial": "zeros"}},
		},
		"instances": map[string]any{"count": 1, "intra_op_threads": 1},
	}
}

// writeVAD adds the served copies of the model file to the repository at
// dir.
func writeVAD(dir, file string) error {
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("%w (make vad fetches it)", err)
	}
	for _, v := range vadVariants {
		vdir := filepath.Join(dir, v.name, "1")
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return err
		}
		b, err := yaml.Marshal(vadConfig(v.wait))
		if err != nil {
			return err
		}
		b = append([]byte("# Written by bench/run for one benchmark run; see bench/RESULTS.md.\n"), b...)
		if err := os.WriteFile(filepath.Join(dir, v.name, "config.yaml"), b, 0o644); err != nil {
			return err
		}
		if err := copyFile(file, filepath.Join(vdir, "model.onnx")); err != nil {
			return err
		}
	}
	return nil
}

// vadAudio returns sequence seq's audio, chunks × vadChunk samples:
// syllable-like bursts of a harmonic stack whose pitch and timing differ
// per sequence, between stretches of quiet noise. Silero hears no speech
// in it (probabilities stay below 0.01), but they differ from chunk to
// chunk and from sequence to sequence, which is what the correctness
// check needs; the model's work does not depend on the content.
func vadAudio(seq, chunks int) []float32 {
	rng := rand.New(rand.NewPCG(uint64(seq)+1, 0x5eed))
	pitch := 110 + 10*float64(seq%12)
	out := make([]float32, chunks*vadChunk)
	for i := range out {
		t := float64(i) / vadSampleRate
		// Bursts of about 0.4 s every 1.1 s, shifted per sequence.
		phase := math.Mod(t+0.13*float64(seq), 1.1)
		voiced := 0.0
		if phase < 0.4 {
			env := math.Sin(math.Pi * phase / 0.4)
			for h := 1.0; h <= 6; h++ {
				voiced += math.Sin(2*math.Pi*pitch*h*t) / h
			}
			voiced *= 0.3 * env
		}
		out[i] = float32(voiced + 0.01*(rng.Float64()-0.5))
	}
	return out
}

// writeVADAudio writes the audio of sequences sequences of chunks chunks
// each, one after another, as float32 little-endian: the file both the
// raw baseline and the load generator read.
func writeVADAudio(path string, sequences, chunks int) error {
	b := make([]byte, 0, sequences*chunks*vadChunk*4)
	for s := range sequences {
		for _, v := range vadAudio(s, chunks) {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return os.WriteFile(path, b, 0o644)
}

// sequenceCheck is the streaming row's correctness check: sequence 0's
// speech probabilities, from every raw batch size and every served run,
// against raw ONNX Runtime's at batch size 1.
type sequenceCheck struct {
	Sequences int `json:"sequences"`
	Chunks    int `json:"chunks_per_sequence"`
	// Compared counts the runs checked, Values the probabilities and
	// Identical those bit-identical to the reference.
	Compared   int     `json:"compared"`
	Values     int     `json:"values"`
	Identical  int     `json:"identical"`
	MaxAbsDiff float64 `json:"max_abs_diff"`
	// Commands run the raw baseline and the load generator (with the
	// server's gRPC address as ADDR).
	Commands []string `json:"commands,omitempty"`
}

// compare checks got against want and counts it in c; it fails when
// the lengths differ or any value is further than vadTolerance.
func (c *sequenceCheck) compare(what string, want, got []float32) error {
	if len(got) != len(want) || len(want) == 0 {
		return fmt.Errorf("%s: %d speech probabilities of sequence 0, raw ONNX Runtime gave %d", what, len(got), len(want))
	}
	c.Compared++
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) || d > vadTolerance {
			return fmt.Errorf("%s: sequence 0 chunk %d: speech probability %v, raw ONNX Runtime at batch size 1 %v (|d| %g > %g)",
				what, i, got[i], want[i], d, vadTolerance)
		}
		c.Values++
		if math.Float32bits(got[i]) == math.Float32bits(want[i]) {
			c.Identical++
		}
		c.MaxAbsDiff = max(c.MaxAbsDiff, d)
	}
	return nil
}

// vadArgs are the raw baseline's and the load generator's arguments.
func (e *env) vadArgs(served, addr string) (raw, load []string) {
	c := e.cfg
	raw = []string{"--model", c.vadModel, "--sequence-data", e.vadData, "--sequences", strconv.Itoa(c.vadSequences),
		"--batch-sizes", joinInts(vadRawSizes), "--intra-op-threads", "1", "--warmup", c.rawWarmup.String(),
		"--dims", "input=" + strconv.Itoa(vadChunk), "--state", "state=stateN@1", "--value", "sr=" + strconv.Itoa(vadSampleRate)}
	load = []string{"--protocol", "grpc", "--addr", addr, "--model", served, "--workload", vadModel,
		"--sequence-data", e.vadData, "--concurrency", strconv.Itoa(c.vadSequences), "--events", "--warmup", c.warmup.String()}
	return raw, load
}

// runSequences measures one repetition of the streaming row: raw ONNX
// Runtime at each of vadRawSizes on the server's core, then each served
// copy driven from the client's core. It fails when sequence 0's answers
// differ from raw ONNX Runtime's at batch size 1.
func (e *env) runSequences(ctx context.Context, res *results, rep int) error {
	c := e.cfg
	rawArgs, _ := e.vadArgs("", "")
	raw, out, err := e.ortbench(ctx, rawArgs)
	if err != nil {
		return err
	}
	res.Meta.ORTVersion = raw.ORTVersion
	var want []float32
	for _, p := range raw.Points {
		if p.BatchSize == 1 {
			want = p.Sequence0
		}
	}
	check := res.SequenceCheck
	check.Sequences, check.Chunks = raw.Sequences, raw.Chunks
	var parts []string
	for _, p := range raw.Points {
		if err := check.compare(fmt.Sprintf("raw ONNX Runtime at batch size %d", p.BatchSize), want, p.Sequence0); err != nil {
			return err
		}
		res.add(pointKey{Model: vadModel, Mode: modeRaw, Batch: p.BatchSize}, out[p.BatchSize])
		parts = append(parts, fmt.Sprintf("b%d %.0f/s", p.BatchSize, p.ItemsPerSec))
	}
	logf("[%d/%d] %s raw: %s chunks", rep, c.reps, vadModel, strings.Join(parts, ", "))
	for _, v := range vadVariants {
		_, args := e.vadArgs(v.name, e.srv.grpc)
		smp, lr, err := e.loadgenWindow(ctx, args, v.name, "1")
		if err == nil && e.again(ctx, smp) {
			smp, lr, err = e.loadgenWindow(ctx, args, v.name, "1")
		}
		if err != nil {
			return err
		}
		if smp.Errors > 0 {
			return fmt.Errorf("%s: %d chunks failed: %v", v.name, smp.Errors, smp.ErrorSamples)
		}
		if err := check.compare(fmt.Sprintf("%s (repetition %d)", v.name, rep), want, lr.Sequence0); err != nil {
			return err
		}
		res.add(pointKey{Model: vadModel, Mode: v.mode, Concurrency: c.vadSequences}, smp)
		logf("[%d/%d] %s %s %d sequences: %s", rep, c.reps, vadModel, v.mode, c.vadSequences, describe(smp))
	}
	if len(check.Commands) == 0 {
		rawArgs, loadArgs := e.vadArgs(vadVariants[0].name, "ADDR")
		check.Commands = []string{
			"taskset -c " + strconv.Itoa(c.serverCPU) + " ortbench " + strings.Join(rawArgs, " "),
			"taskset -c " + strconv.Itoa(c.clientCPU) + " loadgen " + strings.Join(loadArgs, " "),
		}
	}
	return nil
}
