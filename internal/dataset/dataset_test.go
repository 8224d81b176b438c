package dataset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// fp32Row is one row of n float32 values a*k + b.
func fp32Row(name string, n int, a, b float32) tensor.Tensor {
	data := make([]byte, 0, 4*n)
	for k := range n {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(a*float32(k)+b))
	}
	return tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: []int64{int64(n)}, Data: data}
}

// writeFile writes rows with a Writer of the path's format.
func writeFile(t *testing.T, path string, opt WriteOptions, ids []string, rows [][]tensor.Tensor) {
	t.Helper()
	f, err := FormatOf(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	opt.Rows = int64(len(rows))
	w, err := NewWriter(out, f, opt)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if err := w.Write(ids[i], r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, path string, opt ReadOptions) []Row {
	t.Helper()
	r, err := Open(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var rows []Row
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return rows
		}
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
}

// TestRoundTrip writes one input's rows in every format and reads them
// back as a model input: what a Writer writes, a Reader reads, with the
// same bytes, ids and order.
func TestRoundTrip(t *testing.T) {
	spec := tensor.Spec{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{8}}
	var rows [][]tensor.Tensor
	var ids []string
	for i := range 50 {
		rows = append(rows, []tensor.Tensor{fp32Row("INPUT", 8, float32(i)*0.37, -float32(i)/3)})
		ids = append(ids, "row,"+string(rune('a'+i%26)))
	}
	for _, ext := range []string{"jsonl", "csv", "npy", "parquet"} {
		t.Run(ext, func(t *testing.T) {
			idCol := "id"
			if ext == "npy" {
				idCol = ""
			}
			path := filepath.Join(t.TempDir(), "data."+ext)
			writeFile(t, path, WriteOptions{Outputs: []tensor.Spec{spec}, IDColumn: idCol}, ids, rows)
			got := readAll(t, path, ReadOptions{Inputs: []tensor.Spec{spec}, IDColumn: idCol})
			if len(got) != len(rows) {
				t.Fatalf("read %d rows, wrote %d", len(got), len(rows))
			}
			for i, g := range got {
				if g.Err != nil {
					t.Fatalf("row %d: %v", i, g.Err)
				}
				if g.Index != int64(i) {
					t.Errorf("row %d has index %d", i, g.Index)
				}
				if idCol != "" && g.ID != ids[i] {
					t.Errorf("row %d id %q, want %q", i, g.ID, ids[i])
				}
				if !bytes.Equal(g.Inputs[0].Data, rows[i][0].Data) {
					t.Fatalf("row %d data differs", i)
				}
			}
			r, err := Open(path, ReadOptions{Inputs: []tensor.Spec{spec}, IDColumn: idCol})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := r.Skip(45); err != nil {
				t.Fatal(err)
			}
			row, err := r.Next()
			if err != nil || row.Index != 45 || !bytes.Equal(row.Inputs[0].Data, rows[45][0].Data) {
				t.Errorf("after Skip(45): row %d, %v", row.Index, err)
			}
			if err := r.Skip(10); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("Skip past the end = %v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

// TestBadRecords: a malformed record is a row error with its line, and
// reading goes on.
func TestBadRecords(t *testing.T) {
	spec := tensor.Spec{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{2}}
	dir := t.TempDir()
	tests := []struct {
		name, file, text string
		wantErrs         map[int64]string // line → part of the reason
		good             int
	}{
		{"jsonl", "a.jsonl", `{"INPUT": [1, 2]}
{"INPUT": [1, "x"]}

not json
{"INPUT": [1, 2, 3]}
{"OTHER": [1, 2]}
{"inputs": [{"name": "INPUT", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]}]}
{"inputs": [{"name": "INPUT", "shape": [2, 2], "datatype": "FP32", "data": [3, 4, 5, 6]}]}
{"INPUT": [[1], [2]]}
`, map[int64]string{2: "string", 4: "not a JSON object", 5: "does not match", 6: "unknown input", 8: "batch dimension must be 1"}, 3},
		{"csv", "a.csv", "a,b\n1,2\n1,x\n1\n3,4\n", map[int64]string{3: `column "b"`, 4: "1 fields"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			rows := readAll(t, path, ReadOptions{Inputs: []tensor.Spec{spec}, Batched: true})
			good := 0
			for _, r := range rows {
				if r.Err == nil {
					good++
					continue
				}
				want, ok := tt.wantErrs[r.Line]
				if !ok {
					t.Errorf("line %d: unexpected error %v", r.Line, r.Err)
					continue
				}
				if !strings.Contains(r.Err.Error(), want) {
					t.Errorf("line %d: error %q, want it to contain %q", r.Line, r.Err, want)
				}
				delete(tt.wantErrs, r.Line)
			}
			for line, want := range tt.wantErrs {
				t.Errorf("line %d: no error, want one containing %q", line, want)
			}
			if good != tt.good {
				t.Errorf("%d good rows, want %d", good, tt.good)
			}
		})
	}
}

// TestFileErrors: a file that cannot fit the model fails at Open, naming
// the problem.
func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	spec := tensor.Spec{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{3}}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	npy64 := filepath.Join(dir, "f64.npy")
	writeFile(t, npy64, WriteOptions{Outputs: []tensor.Spec{{Name: "X", DataType: tensor.FP64, Shape: []int64{3}}}},
		[]string{""}, [][]tensor.Tensor{{{Name: "X", DataType: tensor.FP64, Shape: []int64{3}, Data: make([]byte, 24)}}})
	tests := []struct {
		name string
		path string
		opt  ReadOptions
		want string
	}{
		{"unknown extension", write("a.txt", ""), ReadOptions{Inputs: []tensor.Spec{spec}}, "unknown format"},
		{"missing file", filepath.Join(dir, "none.csv"), ReadOptions{Inputs: []tensor.Spec{spec}}, "no such file"},
		{"csv column count", write("b.csv", "a,b\n1,2\n"), ReadOptions{Inputs: []tensor.Spec{spec}}, "takes 3 values a row"},
		{"csv unknown column", write("c.csv", "a,b,c\n1,2,3\n"), ReadOptions{Inputs: []tensor.Spec{spec}, Columns: []string{"a", "z"}}, `no column "z"`},
		{"csv empty", write("d.csv", ""), ReadOptions{Inputs: []tensor.Spec{spec}}, "header"},
		{"npy dtype", npy64, ReadOptions{Inputs: []tensor.Spec{spec}}, "holds FP64"},
		{"npy garbage", write("e.npy", "hello"), ReadOptions{Inputs: []tensor.Spec{spec}}, "not an NPY file"},
		{"parquet garbage", write("f.parquet", "hello world, not parquet"), ReadOptions{Inputs: []tensor.Spec{spec}}, "bad data file"},
		{"two inputs from csv", write("g.csv", "a\n1\n"), ReadOptions{Inputs: []tensor.Spec{spec, spec}}, "use JSON lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Open(tt.path, tt.opt)
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestJSONTensor(t *testing.T) {
	tests := []struct {
		name string
		j    JSONTensor
		want string // "" for success
	}{
		{"nested", JSONTensor{Name: "a", Shape: []int64{2, 2}, DataType: "INT32", Data: []byte("[[1,2],[3,4]]")}, ""},
		{"flat", JSONTensor{Name: "a", Shape: []int64{2, 2}, DataType: "INT32", Data: []byte("[1,2,3,4]")}, ""},
		{"bytes", JSONTensor{Name: "a", Shape: []int64{2}, DataType: "BYTES", Data: []byte(`["x","yz"]`)}, ""},
		{"count", JSONTensor{Name: "a", Shape: []int64{3}, DataType: "INT32", Data: []byte("[1,2]")}, "holds 3 elements, data has 2"},
		{"ragged", JSONTensor{Name: "a", Shape: []int64{3}, DataType: "INT32", Data: []byte("[[1,2],[3]]")}, "ragged"},
		{"fraction for int", JSONTensor{Name: "a", Shape: []int64{1}, DataType: "INT32", Data: []byte("[1.5]")}, "not a INT32"},
		{"unknown type", JSONTensor{Name: "a", Shape: []int64{1}, DataType: "FP128", Data: []byte("[1]")}, "unknown datatype"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.j.Tensor()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := got.Validate(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
