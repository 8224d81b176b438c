package tensor

import (
	"encoding/binary"
	"slices"
	"testing"
)

func int32Tensor(name string, shape []int64, vals ...int32) Tensor {
	t := Tensor{Name: name, DataType: Int32, Shape: shape}
	for _, v := range vals {
		t.Data = binary.LittleEndian.AppendUint32(t.Data, uint32(v))
	}
	return t
}

func int32s(t Tensor) []int32 {
	out := make([]int32, len(t.Data)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

// A [2, N, 2] state stacked along axis 1 and cut back gives each part its
// own values, and the stacked layout is what a model with the batch on axis
// 1 expects.
func TestConcatSplitAxis1(t *testing.T) {
	a := int32Tensor("s", []int64{2, 1, 2}, 1, 2, 3, 4)
	b := int32Tensor("s", []int64{2, 2, 2}, 5, 6, 7, 8, 9, 10, 11, 12)
	got, err := ConcatAt([]Tensor{a, b}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{2, 3, 2}; !slices.Equal(got.Shape, want) {
		t.Fatalf("shape %v, want %v", got.Shape, want)
	}
	if want := []int32{1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12}; !slices.Equal(int32s(got), want) {
		t.Fatalf("data %v, want %v", int32s(got), want)
	}
	parts := make([]Tensor, 2)
	if err := SplitAt(parts, got, 1, []int64{1, 2}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []Tensor{a, b} {
		if !slices.Equal(parts[i].Shape, want.Shape) || !slices.Equal(int32s(parts[i]), int32s(want)) {
			t.Errorf("part %d: %v %v, want %v %v", i, parts[i].Shape, int32s(parts[i]), want.Shape, int32s(want))
		}
	}
}

func TestSameLayoutAt(t *testing.T) {
	sr := int32Tensor("sr", nil, 16000)
	tests := []struct {
		name string
		a, b Tensor
		axis int
		want bool
	}{
		{"shared equal", sr, int32Tensor("sr", nil, 16000), NoAxis, true},
		{"shared differ", sr, int32Tensor("sr", nil, 8000), NoAxis, false},
		{"axis 1 other dims equal", int32Tensor("s", []int64{2, 1}, 1, 2), int32Tensor("s", []int64{2, 3}, 1, 2, 3, 4, 5, 6), 1, true},
		{"axis 1 other dims differ", int32Tensor("s", []int64{1, 1}, 1), int32Tensor("s", []int64{2, 1}, 1, 2), 1, false},
		{"axis beyond rank", sr, sr, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SameLayoutAt(tc.a, tc.b, tc.axis); got != tc.want {
				t.Errorf("SameLayoutAt = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSplitAtErrors(t *testing.T) {
	s := int32Tensor("s", []int64{2, 2}, 1, 2, 3, 4)
	if err := SplitAt(make([]Tensor, 2), s, 1, []int64{1, 2}); err == nil {
		t.Error("rows summing past the axis were accepted")
	}
	if err := SplitAt(make([]Tensor, 1), s, 2, []int64{2}); err == nil {
		t.Error("an axis beyond the rank was accepted")
	}
}
