package quality

import (
	"encoding/binary"
	"math"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// valueAt returns element i of a numeric tensor as a float64 (NaN as
// -Inf, so an argmax never picks it). Precondition: i is in range and the
// type is numeric.
func valueAt(t tensor.Tensor, i int) float64 {
	b := t.Data
	var v float64
	switch t.DataType {
	case tensor.FP32:
		v = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	case tensor.FP64:
		v = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	case tensor.FP16:
		v = float64(tensor.FP16ToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
	case tensor.BF16:
		v = float64(tensor.BF16ToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
	case tensor.Int8:
		v = float64(int8(b[i]))
	case tensor.Uint8:
		v = float64(b[i])
	case tensor.Int16:
		v = float64(int16(binary.LittleEndian.Uint16(b[2*i:])))
	case tensor.Uint16:
		v = float64(binary.LittleEndian.Uint16(b[2*i:]))
	case tensor.Int32:
		v = float64(int32(binary.LittleEndian.Uint32(b[4*i:])))
	case tensor.Uint32:
		v = float64(binary.LittleEndian.Uint32(b[4*i:]))
	case tensor.Int64:
		v = float64(int64(binary.LittleEndian.Uint64(b[8*i:])))
	case tensor.Uint64:
		v = float64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	if math.IsNaN(v) {
		return math.Inf(-1)
	}
	return v
}
