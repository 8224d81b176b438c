package runtime

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/onnxgen"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Sizes of the benchmark's model: crowdLayers MatMul+Relu layers of
// crowdWidth units, run at crowdBatch rows, enough work per run for
// intra-op threads to matter.
const (
	crowdWidth  = 512
	crowdLayers = 4
	crowdBatch  = 16
	// crowdModels are loaded; one is busy, the others idle.
	crowdModels = 4
)

// crowdModel returns a chain of crowdLayers MatMul+Relu layers over FLOAT
// "INPUT" [batch, crowdWidth], with weights of 1/crowdWidth so values stay
// finite.
func crowdModel() []byte {
	g := onnxgen.NewGraph("crowd")
	g.AddInput("INPUT", onnxgen.Float, []int64{onnxgen.Dynamic, crowdWidth})
	g.AddOutput("OUTPUT", onnxgen.Float, []int64{onnxgen.Dynamic, crowdWidth})
	w := make([]byte, 4*crowdWidth*crowdWidth)
	for i := 0; i < len(w); i += 4 {
		binary.LittleEndian.PutUint32(w[i:], math.Float32bits(1.0/crowdWidth))
	}
	g.AddInitializer("W", onnxgen.Float, []int64{crowdWidth, crowdWidth}, w)
	prev := "INPUT"
	for l := range crowdLayers {
		mm, out := fmt.Sprintf("mm%d", l), fmt.Sprintf("relu%d", l)
		if l == crowdLayers-1 {
			out = "OUTPUT"
		}
		g.AddNode("MatMul", []string{prev, "W"}, []string{mm})
		g.AddNode("Relu", []string{mm}, []string{out})
		prev = out
	}
	return g.Model(onnxgen.DefaultOpset)
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCrowded measures one busy model while crowdModels-1 idle ones
// are loaded, every session configured as the server configured them
// before ("before": a pool of every available CPU per session, ONNX
// Runtime's default spinning) and as ThreadBudget divides the CPUs now
// ("after"). It reports inferences (rows) per second and CPU time per
// inference. `make bench-threads` runs it and writes bench/THREADS.md.
func BenchmarkCrowded(b *testing.B) {
	if ortErr != nil {
		b.Skipf("ONNX Runtime not available: %v", ortErr)
	}
	cpus := AvailableCPUs()
	budget := NewThreadBudget(cpus)
	budget.Plan(crowdModels)
	after, _ := budget.Acquire("crowd", 1)
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"before", Options{IntraOpThreads: cpus}},
		{"after", Options{IntraOpThreads: after.IntraOpThreads, AllowSpinning: &after.AllowSpinning}},
	} {
		b.Run(fmt.Sprintf("%s/cpus=%d/threads=%d", c.name, cpus, c.opts.IntraOpThreads), func(b *testing.B) {
			path := crowdPath(b)
			in := tensor.Tensor{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{crowdBatch, crowdWidth}, Data: make([]byte, 4*crowdBatch*crowdWidth)}
			var sessions []*Session
			for range crowdModels {
				s, err := Load(path, c.opts)
				if err != nil {
					b.Fatal(err)
				}
				sessions = append(sessions, s)
				// Every session runs once, as warmup does, so each
				// pool has started its threads.
				if _, err := s.Run(context.Background(), []tensor.Tensor{in}); err != nil {
					b.Fatal(err)
				}
			}
			defer func() {
				for _, s := range sessions {
					_ = s.Close()
				}
			}()
			busy := sessions[0]
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime(b)
			for range b.N {
				if _, err := busy.Run(context.Background(), []tensor.Tensor{in}); err != nil {
					b.Fatal(err)
				}
			}
			wall, cpu := time.Since(start), cpuTime(b)-cpu0
			rows := float64(b.N * crowdBatch)
			b.ReportMetric(rows/wall.Seconds(), "inferences/s")
			b.ReportMetric(float64(cpu.Microseconds())/rows, "cpu-us/inference")
		})
	}
}

// crowdPath writes the benchmark's model once per benchmark.
func crowdPath(b *testing.B) string {
	p := filepath.Join(b.TempDir(), "model.onnx")
	if err := os.WriteFile(p, crowdModel(), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}
