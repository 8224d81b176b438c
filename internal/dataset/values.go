package dataset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport/httpapi/jsonscan"
)

// errValue is wrapped by every error about one element's value.
var errValue = errors.New("bad value")

// appendText appends one element of type dt written as text: a number for
// the numeric types, true/false/1/0 for BOOL, the text itself for BYTES.
func appendText(dst []byte, dt tensor.DataType, s string) ([]byte, error) {
	switch dt {
	case tensor.Bytes:
		return tensor.AppendBytesElement(dst, []byte(s)), nil
	case tensor.Bool:
		switch strings.TrimSpace(s) {
		case "true", "True", "TRUE", "1":
			return append(dst, 1), nil
		case "false", "False", "FALSE", "0":
			return append(dst, 0), nil
		}
		return dst, fmt.Errorf("%w: %q is not a boolean", errValue, s)
	case tensor.FP16, tensor.FP32, tensor.FP64, tensor.BF16:
		f, err := parseFloat(strings.TrimSpace(s))
		if err != nil {
			return dst, fmt.Errorf("%w: %q is not a number", errValue, s)
		}
		return appendFloat(dst, dt, f)
	case tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		u, err := strconv.ParseUint(strings.TrimSpace(s), 10, dt.Size()*8)
		if err != nil {
			return dst, fmt.Errorf("%w: %q is not a %s", errValue, s, dt)
		}
		return appendUint(dst, dt, u), nil
	case tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, dt.Size()*8)
		if err != nil {
			return dst, fmt.Errorf("%w: %q is not a %s", errValue, s, dt)
		}
		return appendUint(dst, dt, uint64(i)), nil
	}
	return dst, fmt.Errorf("%w: data type %s is not supported", errValue, dt)
}

// parseFloat is strconv.ParseFloat(s, 64), faster for the common case: a
// number in JSON's grammar (a subset of ParseFloat's) whose decimal
// mantissa and power of ten are exact float64 values converts with one
// correctly rounded operation (jsonscan, the HTTP front end's number
// parser, which proves that case and leaves every other to strconv).
// Scored files are mostly such numbers, and ParseFloat was the largest
// cost of reading CSV. BenchmarkParseFloat (CSV fields of four decimals,
// one core of the machine in bench/SCORE.md): 11.7 ns a field against
// strconv's 20.8 ns.
func parseFloat(s string) (float64, error) {
	var n jsonscan.Number
	if b := []byte(s); jsonscan.ScanNumber(b, 0, &n) && n.End == len(b) {
		if f, ok := n.Float64(); ok {
			return f, nil
		}
	}
	return strconv.ParseFloat(s, 64)
}

// appendFloat appends f as one element of a numeric type; an integer type
// takes it only when it is a whole number in range.
func appendFloat(dst []byte, dt tensor.DataType, f float64) ([]byte, error) {
	switch dt {
	case tensor.FP32:
		return binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(f))), nil
	case tensor.FP64:
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f)), nil
	case tensor.FP16:
		return binary.LittleEndian.AppendUint16(dst, tensor.Float32ToFP16(float32(f))), nil
	case tensor.BF16:
		return binary.LittleEndian.AppendUint16(dst, tensor.Float32ToBF16(float32(f))), nil
	case tensor.Bool:
		if f != 0 && f != 1 {
			return dst, fmt.Errorf("%w: %v is not a boolean", errValue, f)
		}
		return append(dst, byte(f)), nil
	}
	if f != math.Trunc(f) || math.IsInf(f, 0) {
		return dst, fmt.Errorf("%w: %v is not a whole number for %s", errValue, f, dt)
	}
	return appendText(dst, dt, strconv.FormatFloat(f, 'f', -1, 64))
}

func appendUint(dst []byte, dt tensor.DataType, u uint64) []byte {
	switch dt.Size() {
	case 1:
		return append(dst, byte(u))
	case 2:
		return binary.LittleEndian.AppendUint16(dst, uint16(u))
	case 4:
		return binary.LittleEndian.AppendUint32(dst, uint32(u))
	}
	return binary.LittleEndian.AppendUint64(dst, u)
}

// Float64s returns the elements of a numeric tensor as float64 values
// (INT64 and UINT64 beyond 2^53 lose precision), for comparisons with a
// tolerance.
func Float64s(t tensor.Tensor) ([]float64, error) {
	if t.DataType == tensor.Bytes || !t.DataType.Valid() {
		return nil, fmt.Errorf("tensor %q: %s is not numeric", t.Name, t.DataType)
	}
	size := t.DataType.Size()
	out := make([]float64, len(t.Data)/size)
	for i := range out {
		out[i] = elementFloat(t.DataType, t.Data[i*size:])
	}
	return out, nil
}

func elementFloat(dt tensor.DataType, b []byte) float64 {
	switch dt {
	case tensor.Bool, tensor.Uint8:
		return float64(b[0])
	case tensor.Int8:
		return float64(int8(b[0]))
	case tensor.Uint16:
		return float64(binary.LittleEndian.Uint16(b))
	case tensor.Int16:
		return float64(int16(binary.LittleEndian.Uint16(b)))
	case tensor.Uint32:
		return float64(binary.LittleEndian.Uint32(b))
	case tensor.Int32:
		return float64(int32(binary.LittleEndian.Uint32(b)))
	case tensor.Uint64:
		return float64(binary.LittleEndian.Uint64(b))
	case tensor.Int64:
		return float64(int64(binary.LittleEndian.Uint64(b)))
	case tensor.FP16:
		return float64(tensor.FP16ToFloat32(binary.LittleEndian.Uint16(b)))
	case tensor.BF16:
		return float64(tensor.BF16ToFloat32(binary.LittleEndian.Uint16(b)))
	case tensor.FP32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	case tensor.FP64:
		return math.Float64frombits(binary.LittleEndian.Uint64(b))
	}
	return math.NaN()
}

// appendElement appends element i of t (numeric, at offset i*size) as text:
// the shortest decimal that reads back as the same value, true/false for
// BOOL. JSON has no NaN or infinities: with forJSON they are null.
func appendElement(dst []byte, dt tensor.DataType, b []byte, forJSON bool) []byte {
	if dt == tensor.FP32 {
		// The common case first, without the conversions below.
		f := math.Float32frombits(binary.LittleEndian.Uint32(b))
		if forJSON && (f != f || math.IsInf(float64(f), 0)) {
			return append(dst, "null"...)
		}
		return strconv.AppendFloat(dst, float64(f), 'g', -1, 32)
	}
	switch dt {
	case tensor.Bool:
		return strconv.AppendBool(dst, b[0] != 0)
	case tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64:
		return strconv.AppendInt(dst, int64(elementFloatInt(dt, b)), 10)
	case tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		return strconv.AppendUint(dst, elementUint(dt, b), 10)
	}
	f := elementFloat(dt, b)
	if forJSON && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return append(dst, "null"...)
	}
	bits := 32
	if dt == tensor.FP64 {
		bits = 64
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

func elementUint(dt tensor.DataType, b []byte) uint64 {
	switch dt.Size() {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

func elementFloatInt(dt tensor.DataType, b []byte) int64 {
	switch dt {
	case tensor.Int8:
		return int64(int8(b[0]))
	case tensor.Int16:
		return int64(int16(binary.LittleEndian.Uint16(b)))
	case tensor.Int32:
		return int64(int32(binary.LittleEndian.Uint32(b)))
	}
	return int64(binary.LittleEndian.Uint64(b))
}
