//go:build !race

package payloadlog

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/serving"
)

// TestKeepUnsampledAllocatesNothing: the request path of a request that is
// not logged (no policy, or not drawn) allocates nothing.
func TestKeepUnsampledAllocatesNothing(t *testing.T) {
	l, err := New(Config{}, nil, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l.SetPolicy("simple", &Policy{Sample: 1e-12, Mode: ModeAll})
	req := simpleRequest(1, 4)
	for _, model := range []string{"simple", "other"} {
		rec := &serving.Record{Model: model, Version: "1", ID: "x", Inputs: req.Inputs}
		if n := testing.AllocsPerRun(1000, func() {
			if _, ok := l.Keep(rec); ok {
				t.Fatal("kept")
			}
		}); n != 0 {
			t.Errorf("Keep of an unsampled request of %s: %v allocations, want 0", model, n)
		}
	}
}
