package score

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	goruntime "runtime"
	"testing"

	"github.com/onnxserve/onnxserve/internal/dataset"
	"github.com/onnxserve/onnxserve/internal/serving/servingtest"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// firstTen is a fake on FP32 INPUT [-1, -1] whose OUT [-1, 10] is each
// row's first ten values: a model that costs next to nothing, so a
// benchmark measures the pipeline around it.
func firstTen() *servingtest.Model {
	return &servingtest.Model{
		In:  []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, -1}}},
		Out: []tensor.Spec{{Name: "OUT", DataType: tensor.FP32, Shape: []int64{-1, 10}}},
		RunFunc: func(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			n, w := int(in[0].Shape[0]), int(in[0].Shape[1])
			out := make([]byte, 0, 40*n)
			for r := range n {
				out = append(out, in[0].Data[4*r*w:4*r*w+40]...)
			}
			return []tensor.Tensor{{Name: "OUT", DataType: tensor.FP32, Shape: []int64{int64(n), 10}, Data: out}}, nil
		},
	}
}

// BenchmarkRun scores an NPY file of 20,000 rows of 64 FP32 values into
// each output format, two workers, with a model that costs next to
// nothing: the cost of reading, batching, encoding and writing. It
// reports rows/s and heap allocations a row; `go test -run '^$' -bench Run
// -cpuprofile cpu.out ./internal/score` profiles it.
func BenchmarkRun(b *testing.B) {
	const rows = 20000
	root := fakeRepo(b)
	dir := b.TempDir()
	in := filepath.Join(dir, "in.npy")
	f, err := os.Create(in)
	if err != nil {
		b.Fatal(err)
	}
	spec := tensor.Spec{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{64}}
	w, err := dataset.NewWriter(f, dataset.NPY, dataset.WriteOptions{Outputs: []tensor.Spec{spec}, Rows: rows})
	if err != nil {
		b.Fatal(err)
	}
	row := []tensor.Tensor{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{64}, Data: make([]byte, 256)}}
	for i := range rows {
		for k := range 64 {
			binary.LittleEndian.PutUint32(row[0].Data[4*k:], math.Float32bits(float32(i*k)/7))
		}
		if err := w.Write("", row); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	loader := fakeLoader{firstTen()}
	for _, ext := range []string{"npy", "jsonl", "csv", "parquet"} {
		b.Run(ext, func(b *testing.B) {
			out := filepath.Join(dir, "out."+ext)
			var ms0, ms1 goruntime.MemStats
			goruntime.ReadMemStats(&ms0)
			for b.Loop() {
				cfg := Config{Root: root, Model: "m", Input: in, Output: out, Workers: 2, CPUs: 2, Overwrite: true}
				if _, err := Run(context.Background(), loader, cfg); err != nil {
					b.Fatal(err)
				}
			}
			goruntime.ReadMemStats(&ms1)
			total := float64(b.N) * rows
			b.ReportMetric(total/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/total, "allocs/row")
		})
	}
}
