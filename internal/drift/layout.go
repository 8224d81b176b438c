package drift

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Mode says how a tensor's elements map to features.
type Mode string

// The feature modes of a tensor.
const (
	// ModeFlat makes every position of a row a feature: the F positions of
	// a [batch, F] tensor.
	ModeFlat Mode = "flat"
	// ModeChannel makes every channel along axis 1 a feature, its values
	// pooled over the other axes.
	ModeChannel Mode = "channel"
	// ModeNone leaves the tensor out.
	ModeNone Mode = "none"
)

// DefaultMode is the mode of a tensor its config does not name: flat up to
// rank 2, channel above.
func DefaultMode(rank int) Mode {
	if rank > 2 {
		return ModeChannel
	}
	return ModeFlat
}

// layout maps the elements of one row of a tensor to features. A row is
// one index of axis 0 (a tensor of rank 0 is one row; one of rank 1 has one
// element per row).
type layout struct {
	mode     Mode
	features int
	// inner is the number of consecutive elements of one channel in a row
	// (channel mode); 0 until a tensor's shape says it, as it may be dynamic.
	inner int64
}

// newLayout derives the layout of a tensor of shape shape (dims < 0 are
// dynamic); the feature axis must be static.
func newLayout(name string, shape []int64, mode Mode) (layout, error) {
	if mode == "" {
		mode = DefaultMode(len(shape))
	}
	l := layout{mode: mode}
	switch mode {
	case ModeNone:
		return l, nil
	case ModeFlat:
		n := int64(1)
		for _, d := range shape[min(1, len(shape)):] {
			if d < 0 {
				return l, fmt.Errorf("%q has shape %v: flat features need static dimensions after the first; use mode channel or none", name, shape)
			}
			n *= d
		}
		if len(shape) <= 1 {
			n = 1
		}
		l.features = int(n)
	case ModeChannel:
		if len(shape) < 2 {
			l.features = 1
			return l, nil
		}
		if shape[1] < 0 {
			return l, fmt.Errorf("%q has shape %v: channel features need a static axis 1; use mode none", name, shape)
		}
		l.features = int(shape[1])
	default:
		return l, fmt.Errorf("%q: unknown feature mode %q (flat, channel or none)", name, mode)
	}
	return l, nil
}

// rows returns the row count of t and the elements per row.
func rows(t tensor.Tensor) (n, per int64) {
	total, err := tensor.ElementCount(t.Shape)
	if err != nil {
		return 0, 0
	}
	if len(t.Shape) == 0 {
		return 1, total
	}
	if len(t.Shape) == 1 {
		return t.Shape[0], 1
	}
	if t.Shape[0] == 0 {
		return 0, 0
	}
	return t.Shape[0], total / t.Shape[0]
}

// feature returns the feature of element offset o within a row of t.
func (l layout) feature(t tensor.Tensor, o int64) int {
	if l.mode == ModeChannel && len(t.Shape) >= 2 {
		inner := int64(1)
		for _, d := range t.Shape[2:] {
			inner *= d
		}
		return int(o / inner)
	}
	if l.features == 1 {
		return 0
	}
	return int(o)
}

// numeric reports whether a datatype's elements read as numbers.
func numeric(dt tensor.DataType) bool { return dt != tensor.Bytes && dt.Valid() }

// floating reports whether a datatype can hold NaN and infinities.
func floating(dt tensor.DataType) bool {
	return dt == tensor.FP16 || dt == tensor.FP32 || dt == tensor.FP64 || dt == tensor.BF16
}

// value reads element i of a numeric tensor's data as a float64.
func value(dt tensor.DataType, data []byte, i int64) float64 {
	switch dt {
	case tensor.FP32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(data[i*4:])))
	case tensor.FP64:
		return math.Float64frombits(binary.LittleEndian.Uint64(data[i*8:]))
	case tensor.FP16:
		return float64(tensor.FP16ToFloat32(binary.LittleEndian.Uint16(data[i*2:])))
	case tensor.BF16:
		return float64(tensor.BF16ToFloat32(binary.LittleEndian.Uint16(data[i*2:])))
	case tensor.Bool, tensor.Uint8:
		return float64(data[i])
	case tensor.Int8:
		return float64(int8(data[i]))
	case tensor.Uint16:
		return float64(binary.LittleEndian.Uint16(data[i*2:]))
	case tensor.Int16:
		return float64(int16(binary.LittleEndian.Uint16(data[i*2:])))
	case tensor.Uint32:
		return float64(binary.LittleEndian.Uint32(data[i*4:]))
	case tensor.Int32:
		return float64(int32(binary.LittleEndian.Uint32(data[i*4:])))
	case tensor.Uint64:
		return float64(binary.LittleEndian.Uint64(data[i*8:]))
	case tensor.Int64:
		return float64(int64(binary.LittleEndian.Uint64(data[i*8:])))
	}
	return math.NaN()
}
