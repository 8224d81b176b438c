//go:build !race

package httpapi

import (
	"testing"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// Allocations of a whole infer call through the handler before the
// serving API took one round trip and every request got an id, measured
// the same way (client id; no id, so none generated then).
const (
	maxHandleAllocsClientID = 12
	maxHandleAllocsNoID     = 11
)

// TestDecodeAllocs shows that decoding costs a fixed number of allocations
// whatever the element count: no per-element allocation.
func TestDecodeAllocs(t *testing.T) {
	const maxAllocs = 7
	var counts []float64
	for _, n := range []int{16, 4096} {
		body := fp32Request(n)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := decodeInferRequest(body, -1, "", guard.Limits{}); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > maxAllocs {
			t.Errorf("%d elements: %.0f allocations per decode, want at most %d", n, allocs, maxAllocs)
		}
		counts = append(counts, allocs)
	}
	if counts[0] != counts[1] {
		t.Errorf("allocations grow with the element count: %v", counts)
	}
}

// TestHandleInferAllocs bounds the allocations of a whole infer call
// through the handler, serving core excluded (a fake stands in for it): the
// request as JSON, with a client id and without one, the response
// encoded into fasthttp's reused buffer.
func TestHandleInferAllocs(t *testing.T) {
	s := New(Backends{Inference: newCountingInference()}, Config{}, zap.NewNop())
	for _, tt := range []struct {
		name      string
		body      string
		maxAllocs float64
	}{
		{"client id", simpleRequest(`"id":"abc",`), maxHandleAllocsClientID},
		// The generated id lives in the per-request value: free.
		{"generated id", simpleRequest(""), maxHandleAllocsNoID},
	} {
		ctx := inferCtx("/v2/models/simple/infer", tt.body)
		body := []byte(tt.body)
		allocs := testing.AllocsPerRun(200, func() {
			ctx.Request.SetBodyRaw(body)
			s.handle(ctx)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		})
		t.Logf("%s: %.0f allocations per request", tt.name, allocs)
		if allocs > tt.maxAllocs {
			t.Errorf("%s: %.0f allocations per request, want at most %.0f", tt.name, allocs, tt.maxAllocs)
		}
	}
}
