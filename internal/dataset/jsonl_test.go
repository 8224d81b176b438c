package dataset

import (
	"bytes"
	"slices"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// fastPathOpt has inputs of the types and ranks the fast path reads, and
// one it leaves to parse (INT32).
var fastPathOpt = ReadOptions{IDColumn: "id", Inputs: []tensor.Spec{
	{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1}},
	{Name: "grid", DataType: tensor.FP64, Shape: []int64{2, -1}},
	{Name: "half", DataType: tensor.FP16, Shape: []int64{}},
}}

// fastPathLines are lines for fastPathOpt: ones the fast path reads and
// ones it must leave to parse, each with the same outcome either way.
var fastPathLines = []string{
	`{"id": "a1", "INPUT": [1, -2.5, 3e-8, 0.1], "grid": [1, 2, 3, 4], "half": [0.5]}`,
	`{"INPUT":[],"grid":[5,6],"half":[1],"id":17}`,
	` { "half" : [ 2 ] , "grid" : [ 1e308 , -0 ] , "INPUT" : [ 1e39 ] , "id" : -3.5e2 } `,
	`{"id": "a", "INPUT": [1], "grid": [1, 2], "half": [1], "extra": 1}`,
	`{"id": "a", "INPUT": [1], "INPUT": [2, 3], "grid": [1, 2], "half": [1]}`,
	`{"id": "esc\"aped", "INPUT": [1], "grid": [1, 2], "half": [1]}`,
	`{"id": "é", "INPUT": [1], "grid": [1, 2], "half": [1]}`,
	`{"id": true, "INPUT": [1], "grid": [1, 2], "half": [1]}`,
	`{"INPUT": [1], "grid": [1, 2], "half": [1]}`,
	`{"id": "a", "INPUT": [[1, 2]], "grid": [[1, 2], [3, 4]], "half": 1}`,
	`{"id": "a", "INPUT": [1, "x"], "grid": [1, 2], "half": [1]}`,
	`{"id": "a", "INPUT": [1], "grid": [1, 2, 3], "half": [1]}`,
	`{"id": "a", "INPUT": [1], "grid": [1, 2], "half": [1, 2]}`,
	`{"id": "a", "INPUT": [01], "grid": [1, 2], "half": [1]}`,
	`{"id": "a", "INPUT": [1e400], "grid": [1, 2], "half": [1]}`,
	`{"id": "a", "INPUT": [123456789012345678901234567890], "grid": [1, 2], "half": [1]}`,
	`{"id": "a", "INPUT": [1], "grid": [1, 2], "half": [1]} trailing`,
	`{"inputs": [{"name": "INPUT", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}`,
	`{"id": "a", "INP\u0055T": [1], "grid": [1, 2], "half": [1]}`,
	`[1, 2]`,
	`{"id": "a", "INPUT": [1,], "grid": [1, 2], "half": [1]}`,
	"{\"id\": \"a\", \"INPUT\": [1], \"grid\": [1, 2], \"half\": [1]}\xff",
}

func TestDatasetJSONLFastPath(t *testing.T) {
	fast := 0
	for _, line := range fastPathLines {
		if checkFastPath(t, line) {
			fast++
		}
	}
	if fast < 3 {
		t.Errorf("the fast path read %d of the lines, want at least the first three", fast)
	}
}

// FuzzJSONLFastPath: whatever the line, the fast path either declines it,
// leaving the buffers as they were, or reads what parse reads.
func FuzzJSONLFastPath(f *testing.F) {
	for _, line := range fastPathLines {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line string) { checkFastPath(t, line) })
}

// checkFastPath compares parseFast with parse on one line and reports
// whether the fast path took it.
func checkFastPath(t *testing.T, line string) bool {
	t.Helper()
	r := newJSONLReader(fastPathOpt)
	bufs := [][]byte{[]byte("a"), []byte("bb"), nil}
	before := [][]byte{slices.Clone(bufs[0]), slices.Clone(bufs[1]), nil}
	id, ok := r.parseFast([]byte(line), bufs)
	wantID, want, err := r.parse([]byte(line))
	if !ok {
		for k := range bufs {
			if !bytes.Equal(bufs[k], before[k]) {
				t.Errorf("%s: declined, but input %d's buffer changed from %q to %q", line, k, before[k], bufs[k])
			}
		}
		return false
	}
	if err != nil {
		t.Errorf("%s: the fast path read it, parse fails: %v", line, err)
		return true
	}
	if id != wantID {
		t.Errorf("%s: id %q, parse reads %q", line, id, wantID)
	}
	for k, w := range want {
		got := r.in[k]
		if got.Name != w.Name || got.DataType != w.DataType || !slices.Equal(got.Shape, w.Shape) || !bytes.Equal(got.Data, w.Data) {
			t.Errorf("%s: input %d is %+v, parse reads %+v", line, k, got, w)
		}
		if !bytes.Equal(bufs[k], append(slices.Clone(before[k]), w.Data...)) {
			t.Errorf("%s: input %d's buffer %q, want %q then the data", line, k, bufs[k], before[k])
		}
	}
	return true
}
