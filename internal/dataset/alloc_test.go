//go:build !race

package dataset

import (
	"path/filepath"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TestDatasetNextAppendAllocs: once its buffer has grown, reading a row of NPY
// allocates nothing, and of CSV only the one string encoding/csv makes of
// each record; score reads every row this way.
func TestDatasetNextAppendAllocs(t *testing.T) {
	spec := tensor.Spec{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{16}}
	var rows [][]tensor.Tensor
	for i := range 400 {
		rows = append(rows, []tensor.Tensor{fp32Row("INPUT", 16, float32(i)/3, 1.25)})
	}
	for ext, want := range map[string]float64{"npy": 0, "csv": 1} {
		t.Run(ext, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rows."+ext)
			writeFile(t, path, WriteOptions{Outputs: []tensor.Spec{spec}}, make([]string, len(rows)), rows)
			r, err := Open(path, ReadOptions{Inputs: []tensor.Spec{spec}})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			bufs := [][]byte{make([]byte, 0, 64)}
			allocs := testing.AllocsPerRun(300, func() {
				bufs[0] = bufs[0][:0]
				if row, err := r.NextAppend(bufs); err != nil || row.Err != nil {
					t.Fatal(err, row.Err)
				}
			})
			if allocs > want {
				t.Errorf("%v allocations a row, want %v", allocs, want)
			}
		})
	}
}

// TestDatasetParseFloatAllocs: the fast path of a CSV or JSON number allocates
// nothing.
func TestDatasetParseFloatAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = parseFloat("-0.123456789") }); n != 0 {
		t.Errorf("%v allocations a number, want 0", n)
	}
}
