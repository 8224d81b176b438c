package guard

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
)

// bytesData lays out BYTES elements of the given lengths.
func bytesData(lengths ...int) []byte {
	var b []byte
	for _, n := range lengths {
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
		b = append(b, make([]byte, n)...)
	}
	return b
}

func TestLimits(t *testing.T) {
	lim := Limits{MaxTensorElements: 8, MaxInputs: 2, MaxBytesElement: 4}
	str := func(shape []int64, data []byte) tensor.Tensor {
		return tensor.Tensor{Name: "s", DataType: tensor.Bytes, Shape: shape, Data: data}
	}
	tests := []struct {
		name  string
		check func() error
		limit string // "" = within the limits
	}{
		{"inputs at the limit", func() error { return lim.CheckInputs(2) }, ""},
		{"inputs over", func() error { return lim.CheckInputs(3) }, LimitInputs},
		{"elements at the limit", func() error { return lim.CheckElements("x", 8) }, ""},
		{"elements over", func() error { return lim.CheckElements("x", 9) }, LimitTensorElements},
		{"bytes element at the limit", func() error { return lim.CheckBytesElement("s", 0, 4) }, ""},
		{"bytes element over", func() error { return lim.CheckBytesElement("s", 0, 5) }, LimitBytesElement},
		{"tensor fixed-size over", func() error {
			return lim.CheckTensor(tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{3, 3}})
		}, LimitTensorElements},
		{"tensor fixed-size within", func() error {
			return lim.CheckTensor(tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{2, 4}})
		}, ""},
		{"tensor bytes within", func() error { return lim.CheckTensor(str([]int64{3}, bytesData(4, 0, 2))) }, ""},
		{"tensor bytes long last element", func() error { return lim.CheckTensor(str([]int64{3}, bytesData(1, 2, 5))) }, LimitBytesElement},
		// A length prefix over the limit is refused even when the data
		// behind it is missing: it is the claim that counts.
		{"tensor bytes long claim", func() error {
			return lim.CheckTensor(str([]int64{1}, binary.LittleEndian.AppendUint32(nil, 1<<31)))
		}, LimitBytesElement},
		// Malformed layouts are Validate's to report.
		{"tensor bytes truncated prefix", func() error { return lim.CheckTensor(str([]int64{2}, []byte{1, 0})) }, ""},
		{"tensor bytes short data", func() error { return lim.CheckTensor(str([]int64{2}, bytesData(3)[:5])) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check()
			if tt.limit == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if !errors.Is(err, transport.ErrLimit) {
				t.Fatalf("error %v does not wrap transport.ErrLimit", err)
			}
			if !strings.Contains(err.Error(), tt.limit) {
				t.Fatalf("error %q does not name %s", err, tt.limit)
			}
			if _, code := transport.Status(err); code != 413 {
				t.Fatalf("status %d, want 413", code)
			}
		})
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := Limits{MaxInputs: 3, MaxBytesElement: -1}.WithDefaults()
	want := Limits{MaxTensorElements: DefaultMaxTensorElements, MaxInputs: 3, MaxBytesElement: DefaultMaxBytesElement}
	if got != want {
		t.Fatalf("WithDefaults = %+v, want %+v", got, want)
	}
	// The zero Limits checks against the defaults, not against nothing.
	if err := (Limits{}).CheckInputs(DefaultMaxInputs + 1); !errors.Is(err, transport.ErrLimit) {
		t.Fatalf("zero Limits let %d inputs through: %v", DefaultMaxInputs+1, err)
	}
}
