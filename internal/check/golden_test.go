package check

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

func fp32(name string, shape []int64, v ...float32) tensor.Tensor {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: shape, Data: b}
}

func TestCompare(t *testing.T) {
	want := []tensor.Tensor{fp32("y", []int64{2, 2}, 1, 2, 3, 4)}
	tests := []struct {
		name     string
		got      tensor.Tensor
		abs, rel float64
		diff     []string // "" in the list: must match
	}{
		{"equal", fp32("y", []int64{2, 2}, 1, 2, 3, 4), 0, 0, nil},
		{"within absolute", fp32("y", []int64{2, 2}, 1, 2, 3.001, 4), 0.01, 0, nil},
		{"within relative", fp32("y", []int64{2, 2}, 1, 2, 3, 4.03), 0, 0.01, nil},
		{"beyond", fp32("y", []int64{2, 2}, 1, 2, 3.5, 4), 0.01, 0.01, []string{"1 of 4 elements differ", "y[1 0]: got 3.5, want 3"}},
		{"shape", fp32("y", []int64{4}, 1, 2, 3, 4), 0, 0, []string{"got FP32 [4], want FP32 [2 2]"}},
		{"missing", fp32("z", []int64{2, 2}, 1, 2, 3, 4), 0, 0, []string{`output "y": missing`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := compare(map[string]tensor.Tensor{tt.got.Name: tt.got}, want, tt.abs, tt.rel)
			if len(tt.diff) == 0 {
				if d != "" {
					t.Errorf("diff %q, want none", d)
				}
				return
			}
			for _, w := range tt.diff {
				if !strings.Contains(d, w) {
					t.Errorf("diff %q lacks %q", d, w)
				}
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ds := make([]time.Duration, 200)
	for i := range ds {
		ds[i] = time.Duration(200-i) * time.Millisecond
	}
	if got := percentile(ds, 0.99); got != 198*time.Millisecond {
		t.Errorf("p99 of 1..200ms = %s, want 198ms", got)
	}
}
