//go:build !race

package httpapi

import (
	"testing"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
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
