package batcher

import (
	"context"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// copyRunner stands in for a model as cheap as a model can be: it copies
// its inputs into fresh outputs, so what the benchmarks measure is the
// batcher around it.
func copyRunner(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	out := make([]tensor.Tensor, len(in))
	for i, t := range in {
		t.Data = append([]byte(nil), t.Data...)
		out[i] = t
	}
	return out, nil
}

// benchInput is one row of 64 INT64 values.
func benchInput() []tensor.Tensor { return []tensor.Tensor{ids("x", 64, 1)} }

// BenchmarkRunnerDirect is the baseline for BenchmarkSubmit: the same
// runner called without a batcher.
func BenchmarkRunnerDirect(b *testing.B) {
	ctx, in := context.Background(), benchInput()
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := copyRunner(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := copyRunner(ctx, in); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkSubmit(b *testing.B) {
	tests := []struct {
		name     string
		cfg      Config
		parallel bool
	}{
		{"sequential", Config{MaxBatchSize: 8, Batching: true}, false},
		{"parallel/batching", Config{MaxBatchSize: 8, Batching: true, MaxQueueSize: 4096}, true},
		{"parallel/batching, 2 instances", Config{MaxBatchSize: 8, Batching: true, MaxQueueSize: 4096, Instances: 2}, true},
		{"parallel/no batching", Config{MaxBatchSize: 8, MaxQueueSize: 4096}, true},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			bt, err := New(runnerFunc(copyRunner), tt.cfg, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := bt.Close(context.Background()); err != nil {
					b.Error(err)
				}
			}()
			ctx, in := context.Background(), benchInput()
			b.ReportAllocs()
			if !tt.parallel {
				for b.Loop() {
					if _, err := bt.Submit(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(16) // many clients per core, as a server sees
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bt.Submit(ctx, in); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
