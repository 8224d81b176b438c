//go:build !race

package tensor

import "testing"

// TestSplitAllocations pins Split's cost: the result slice and one shared
// shape allocation, independent of the tensor's size.
func TestSplitAllocations(t *testing.T) {
	big := Tensor{Name: "x", DataType: FP32, Shape: []int64{8, 1024}, Data: make([]byte, 8*1024*4)}
	rows := []int64{1, 2, 1, 4}
	dst := make([]Tensor, len(rows))
	allocs := testing.AllocsPerRun(100, func() {
		if err := SplitInto(dst, big, rows); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("SplitInto allocates %v times per call, want at most 1", allocs)
	}
	buf := make([]byte, 0, len(big.Data))
	parts := []Tensor{big, big}
	allocs = testing.AllocsPerRun(100, func() {
		if _, err := Concat(parts[:1], buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Concat of one part allocates %v times", allocs)
	}
}
