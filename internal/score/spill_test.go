package score

import (
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TestChunkRoundTrip: what a committed chunk holds reads back in order,
// and an uncommitted one is invisible.
func TestChunkRoundTrip(t *testing.T) {
	dir := t.TempDir()
	outs := []tensor.Spec{{Name: "Y", DataType: tensor.Int32, Shape: []int64{2}}}
	cw, err := newChunkWriter(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	row := []tensor.Tensor{{Name: "Y", DataType: tensor.Int32, Shape: []int64{2}, Data: []byte{1, 0, 0, 0, 2, 0, 0, 0}}}
	if err := cw.result("a", row); err != nil {
		t.Fatal(err)
	}
	if err := cw.failure(1, 2, "bad"); err != nil {
		t.Fatal(err)
	}
	if err := cw.result("c", row); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(chunkName(dir, 0)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("chunk visible before commit: %v", err)
	}
	if err := cw.commit(); err != nil {
		t.Fatal(err)
	}
	res, errs, err := chunkCounts(chunkName(dir, 0))
	if err != nil || res != 2 || errs != 1 {
		t.Fatalf("counts %d, %d, %v; want 2, 1", res, errs, err)
	}
	cr, err := openChunk(chunkName(dir, 0), outs)
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
