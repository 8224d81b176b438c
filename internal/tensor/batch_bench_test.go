package tensor

import (
	"fmt"
	"testing"
)

// benchParts returns n one-row FP32 tensors shaped like a small image
// classifier's input, [1, 3, 48, 192].
func benchParts(n int) []Tensor {
	parts := make([]Tensor, n)
	for i := range parts {
		parts[i] = Tensor{Name: "x", DataType: FP32, Shape: []int64{1, 3, 48, 192}, Data: make([]byte, 3*48*192*4)}
	}
	return parts
}

func BenchmarkConcat(b *testing.B) {
	for _, n := range []int{2, 8, 32} {
		b.Run(fmt.Sprintf("parts=%d", n), func(b *testing.B) {
			parts := benchParts(n)
			buf := make([]byte, 0, ConcatSize(parts))
			b.SetBytes(int64(ConcatSize(parts)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Concat(parts, buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSplit(b *testing.B) {
	for _, n := range []int{2, 8, 32} {
		b.Run(fmt.Sprintf("parts=%d", n), func(b *testing.B) {
			whole, err := Concat(benchParts(n), nil)
			if err != nil {
				b.Fatal(err)
			}
			rows := make([]int64, n)
			for i := range rows {
				rows[i] = 1
			}
			dst := make([]Tensor, n)
			b.ReportAllocs()
			for b.Loop() {
				if err := SplitInto(dst, whole, rows); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
