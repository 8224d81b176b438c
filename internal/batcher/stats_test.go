package batcher

import (
	"context"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

func TestStatsCountRowsAndRuns(t *testing.T) {
	rec := newRecorder(addOne)
	b := newBatcher(t, rec, Config{MaxBatchSize: 8})
	ctx := context.Background()
	for i := range 5 {
		if _, err := b.Submit(ctx, []tensor.Tensor{ids("x", 2, int64(3*i), int64(3*i+1), int64(3*i+2))}); err != nil {
			t.Fatal(err)
		}
	}
	st := b.Stats()
	if st.Executions != int64(len(rec.records())) || st.Executions != 5 || st.Inferences != 15 {
		t.Errorf("stats %+v after 5 unbatched requests of 3 rows", st)
	}
	if st.Compute <= 0 {
		t.Errorf("compute time %v", st.Compute)
	}
	mustClose(t, b)
}
