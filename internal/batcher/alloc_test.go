//go:build !race

package batcher

import (
	"context"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TestSubmitAllocs pins the allocations the batcher itself adds to a
// request, with a runner that allocates nothing.
func TestSubmitAllocs(t *testing.T) {
	echo := runnerFunc(func(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) { return in, nil })
	deadline, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	tests := []struct {
		name string
		cfg  Config
		ctx  context.Context
	}{
		{"no deadline", Config{MaxBatchSize: 8, Batching: true}, context.Background()},
		{"context deadline", Config{MaxBatchSize: 8, Batching: true}, deadline},
		{"default timeout", Config{MaxBatchSize: 8, Batching: true, DefaultTimeout: time.Hour}, context.Background()},
		{"no batch dimension", Config{}, context.Background()},
	}
	in := []tensor.Tensor{ids("x", 4, 1, 2)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatcher(t, echo, tt.cfg)
			defer mustClose(t, b)
			allocs := testing.AllocsPerRun(1000, func() {
				if _, err := b.Submit(tt.ctx, in); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > 0 {
				t.Errorf("Submit allocates %v times per request, want 0", allocs)
			}
		})
	}
}
