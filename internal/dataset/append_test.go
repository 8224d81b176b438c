package dataset

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TestDatasetNextAppend reads every format with Next and with NextAppend into
// one shared set of buffers: the same rows, each good row's data appended
// after what the buffer held, and a bad row leaving the buffer as it was.
func TestDatasetNextAppend(t *testing.T) {
	spec := tensor.Spec{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{4}}
	var rows [][]tensor.Tensor
	var ids []string
	for i := range 40 {
		rows = append(rows, []tensor.Tensor{fp32Row("INPUT", 4, float32(i)*1.5, 0.25)})
		ids = append(ids, string(rune('a'+i%26)))
	}
	dir := t.TempDir()
	files := map[string]string{}
	for _, ext := range []string{"jsonl", "csv", "npy", "parquet"} {
		files[ext] = filepath.Join(dir, "data."+ext)
		idCol := "id"
		if ext == "npy" {
			idCol = ""
		}
		writeFile(t, files[ext], WriteOptions{Outputs: []tensor.Spec{spec}, IDColumn: idCol}, ids, rows)
	}
	// Text files with bad records between good ones.
	files["bad.jsonl"] = filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(files["bad.jsonl"], []byte("{\"id\": 1, \"INPUT\": [1, 2, 3, 4]}\n{\"id\": 2, \"INPUT\": [1, 2]}\n\n{\"id\": 3, \"INPUT\": [5, 6, 7, 8]}\nnot json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files["bad.csv"] = filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(files["bad.csv"], []byte("id,a,b,c,d\n1,1,2,3,4\n2,1,x,3,4\n3,5,6,7,8\n4,1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, path := range files {
		t.Run(name, func(t *testing.T) {
			opt := ReadOptions{Inputs: []tensor.Spec{spec}, IDColumn: "id"}
			if name == "npy" {
				opt.IDColumn = ""
			}
			want := readAll(t, path, opt)
			r, err := Open(path, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			bufs := [][]byte{[]byte("prefix")}
			for i := 0; ; i++ {
				before := len(bufs[0])
				row, err := r.NextAppend(bufs)
				if errors.Is(err, io.EOF) {
					if i != len(want) {
						t.Fatalf("NextAppend read %d rows, Next %d", i, len(want))
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				w := want[i]
				if row.Index != w.Index || row.Line != w.Line || row.ID != w.ID || (row.Err == nil) != (w.Err == nil) {
					t.Fatalf("row %d: %+v, Next gave %+v", i, row, w)
				}
				if row.Err != nil {
					if row.Err.Error() != w.Err.Error() || len(bufs[0]) != before {
						t.Errorf("bad row %d: error %q (Next: %q), buffer %d → %d bytes", i, row.Err, w.Err, before, len(bufs[0]))
					}
					continue
				}
				got := row.Inputs[0]
				if !bytes.Equal(got.Data, w.Inputs[0].Data) || !bytes.Equal(bufs[0][before:], w.Inputs[0].Data) || !slices.Equal(got.Shape, w.Inputs[0].Shape) {
					t.Fatalf("row %d: appended %v (shape %v), Next read %v (shape %v)", i, bufs[0][before:], got.Shape, w.Inputs[0].Data, w.Inputs[0].Shape)
				}
			}
			if !bytes.HasPrefix(bufs[0], []byte("prefix")) {
				t.Error("NextAppend overwrote what the buffer held")
			}
		})
	}
}

// TestDatasetNPYLargeRows reads rows at and above npyDirectRow, which bypass the
// read buffer, mixed with Skip, which goes through it.
func TestDatasetNPYLargeRows(t *testing.T) {
	n := npyDirectRow/4 + 3 // FP32 values a row: just over the threshold
	spec := tensor.Spec{Name: "X", DataType: tensor.FP32, Shape: []int64{int64(n)}}
	var rows [][]tensor.Tensor
	for i := range 9 {
		rows = append(rows, []tensor.Tensor{fp32Row("X", n, float32(i), float32(i)*7)})
	}
	path := filepath.Join(t.TempDir(), "big.npy")
	writeFile(t, path, WriteOptions{Outputs: []tensor.Spec{spec}}, make([]string, len(rows)), rows)
	r, err := Open(path, ReadOptions{Inputs: []tensor.Spec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	bufs := make([][]byte, 1)
	for i := 0; i < len(rows); i++ {
		if i == 2 || i == 6 {
			if err := r.Skip(1); err != nil {
				t.Fatal(err)
			}
			continue
		}
		bufs[0] = bufs[0][:0]
		row, err := r.NextAppend(bufs)
		if err != nil {
			t.Fatal(err)
		}
		if row.Index != int64(i) || !bytes.Equal(bufs[0], rows[i][0].Data) {
			t.Fatalf("row %d (index %d) differs from what was written", i, row.Index)
		}
	}
	if _, err := r.NextAppend(bufs); !errors.Is(err, io.EOF) {
		t.Errorf("after the last row: %v, want io.EOF", err)
	}
}

// TestDatasetNPYTruncated: a file shorter than its header says is an error
// at the first row it cannot hold.
func TestDatasetNPYTruncated(t *testing.T) {
	spec := tensor.Spec{Name: "X", DataType: tensor.FP32, Shape: []int64{2}}
	rows := [][]tensor.Tensor{{fp32Row("X", 2, 1, 0)}, {fp32Row("X", 2, 2, 0)}, {fp32Row("X", 2, 3, 0)}}
	path := filepath.Join(t.TempDir(), "short.npy")
	writeFile(t, path, WriteOptions{Outputs: []tensor.Spec{spec}}, make([]string, len(rows)), rows)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-3); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path, ReadOptions{Inputs: []tensor.Spec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	bufs := make([][]byte, 1)
	for i := range 2 {
		if _, err := r.NextAppend(bufs); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}
	if _, err := r.NextAppend(bufs); err == nil || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "ends at row 2 of 3") {
		t.Errorf("the cut row read as %v", err)
	}
}
