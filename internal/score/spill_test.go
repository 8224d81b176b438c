package score

import (
	"bufio"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TestChunkRoundTrip: what a committed chunk holds reads back in order,
// and an uncommitted one is invisible; chunks written and read through
// one shared buffer each keep apart.
func TestChunkRoundTrip(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "own buffers", true: "shared buffers"}[shared], func(t *testing.T) {
			var wb *bufio.Writer
			var rb *bufio.Reader
			if shared {
				wb, rb = bufio.NewWriterSize(nil, 64), bufio.NewReaderSize(nil, 64)
			}
			dir := t.TempDir()
			for n := range int64(3) {
				chunkRoundTrip(t, dir, n, wb, rb)
			}
		})
	}
}

func chunkRoundTrip(t *testing.T, dir string, n int64, wb *bufio.Writer, rb *bufio.Reader) {
	t.Helper()
	outs := []tensor.Spec{{Name: "Y", DataType: tensor.Int32, Shape: []int64{2}}}
	cw, err := newChunkWriter(dir, n, wb)
	if err != nil {
		t.Fatal(err)
	}
	row := []tensor.Tensor{{Name: "Y", DataType: tensor.Int32, Shape: []int64{2}, Data: []byte{1, 0, 0, 0, byte(n), 0, 0, 0}}}
	if err := cw.result("a", row); err != nil {
		t.Fatal(err)
	}
	if err := cw.failure(1, 2, "bad"); err != nil {
		t.Fatal(err)
	}
	if err := cw.result("c", row); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(chunkName(dir, n)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("chunk visible before commit: %v", err)
	}
	if err := cw.commit(); err != nil {
		t.Fatal(err)
	}
	res, errs, err := chunkCounts(chunkName(dir, n))
	if err != nil || res != 2 || errs != 1 {
		t.Fatalf("counts %d, %d, %v; want 2, 1", res, errs, err)
	}
	cr, err := openChunk(chunkName(dir, n), outs, rb)
	if err != nil {
		t.Fatal(err)
	}
	defer cr.close()
	var got []string
	var rec chunkRecord
	for {
		err := cr.next(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.err {
			got = append(got, "error:"+rec.reason)
			continue
		}
		if !slices.Equal(rec.outs[0].Data, row[0].Data) || !slices.Equal(rec.outs[0].Shape, row[0].Shape) {
			t.Errorf("row %s: %+v", rec.id, rec.outs[0])
		}
		got = append(got, rec.id)
	}
	if want := []string{"a", "error:bad", "c"}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
}
