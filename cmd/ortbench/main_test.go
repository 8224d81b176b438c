package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/runtime"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, o *options)
	}{
		{name: "dims of two inputs", args: []string{"--model", "m.onnx", "--batch-sizes", "1, 4,16", "--dims", "x=3x48x192;y=7"},
			check: func(t *testing.T, o *options) {
				if !slices.Equal(o.batchSizes, []int{1, 4, 16}) || !slices.Equal(o.dims["x"], []int64{3, 48, 192}) || !slices.Equal(o.dims["y"], []int64{7}) {
					t.Fatalf("options %+v", o)
				}
			}},
		{name: "model missing", args: []string{"--batch-sizes", "1"}, wantErr: true},
		{name: "zero batch", args: []string{"--model", "m", "--batch-sizes", "0"}, wantErr: true},
		{name: "dims without name", args: []string{"--model", "m", "--dims", "3x4"}, wantErr: true},
		{name: "negative dim", args: []string{"--model", "m", "--dims", "x=3x-4"}, wantErr: true},
		{name: "zero duration", args: []string{"--model", "m", "--duration", "0s"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, o)
			}
		})
	}
}

func TestInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	specs := []tensor.Spec{{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 3, -1, -1}}}
	in, err := inputs(specs, 4, map[string][]int64{"x": {3, 48, 192}}, rng)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(in[0].Shape, []int64{4, 3, 48, 192}) || in[0].Validate() != nil {
		t.Fatalf("input shape %v, validate %v", in[0].Shape, in[0].Validate())
	}
	if _, err := inputs(specs, 4, nil, rng); err == nil {
		t.Fatal("open dimensions without --dims accepted")
	}
	if _, err := inputs(specs, 4, map[string][]int64{"x": {3, 48}}, rng); err == nil {
		t.Fatal("too few --dims accepted")
	}
	fixed := []tensor.Spec{{Name: "x", DataType: tensor.FP32, Shape: []int64{1, 3}}}
	if _, err := inputs(fixed, 2, nil, rng); err == nil {
		t.Fatal("a model without a batch dimension accepted")
	}
}

func TestQuantile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for q, want := range map[float64]time.Duration{0.5: 5, 0.9: 9, 0.99: 10, 0: 1} {
		if got := quantile(d, q); got != want {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
}

// TestRunSimple measures the bundled simple model for real; it needs the
// ONNX Runtime library, and `make test` requires it.
func TestRunSimple(t *testing.T) {
	if _, err := runtime.ResolveLibrary(""); err != nil {
		if os.Getenv("ONNXSERVE_REQUIRE_ORT") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	o := &options{model: filepath.Join("..", "..", "models", "simple", "1", "model.onnx"), batchSizes: []int{1, 8},
		warmup: 10 * time.Millisecond, duration: 100 * time.Millisecond, intraOp: 1, seed: 1}
	res, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Points) != 2 || res.ORTVersion == "" {
		t.Fatalf("result %+v", res)
	}
	for _, p := range res.Points {
		if p.Runs == 0 || p.ItemsPerSec <= 0 || p.BatchP50Ms <= 0 || p.BatchP99Ms < p.BatchP50Ms || p.CPUMicrosPerItem <= 0 {
			t.Errorf("batch %d: implausible point %+v", p.BatchSize, p)
		}
	}
}
