package httpapi

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// appendInferResponse appends an infer response to buf: the JSON document,
// then the raw data of every output that binaryFor selects, in output order.
// It returns the grown buffer and the JSON document's length when any output
// went to the binary section, else -1. Every output must pass
// tensor.Validate; the caller checks that first.
//
// JSON cannot spell NaN or the infinities, so such float elements are
// written as null; a client that needs them exactly asks for binary output.
func appendInferResponse(buf []byte, model, version, id string, outs []tensor.Tensor, binaryFor func(int) bool) ([]byte, int) {
	start := len(buf)
	buf = append(buf, `{"model_name":`...)
	buf = appendString(buf, model)
	buf = append(buf, `,"model_version":`...)
	buf = appendString(buf, version)
	if id != "" {
		buf = append(buf, `,"id":`...)
		buf = appendString(buf, id)
	}
	buf = append(buf, `,"outputs":[`...)
	anyBinary := false
	for i, t := range outs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"name":`...)
		buf = appendString(buf, t.Name)
		buf = append(buf, `,"datatype":"`...)
		buf = append(buf, t.DataType.String()...)
		buf = append(buf, `","shape":`...)
		buf = appendShape(buf, t.Shape)
		if binaryFor(i) {
			anyBinary = true
			buf = append(buf, `,"parameters":{"binary_data_size":`...)
			buf = strconv.AppendInt(buf, int64(len(t.Data)), 10)
			buf = append(buf, "}}"...)
			continue
		}
		buf = append(buf, `,"data":`...)
		buf = appendData(buf, t)
		buf = append(buf, '}')
	}
	buf = append(buf, "]}"...)
	if !anyBinary {
		return buf, -1
	}
	jsonLen := len(buf) - start
	for i, t := range outs {
		if binaryFor(i) {
			buf = append(buf, t.Data...)
		}
	}
	return buf, jsonLen
}

func appendShape(buf []byte, shape []int64) []byte {
	buf = append(buf, '[')
	for i, d := range shape {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendInt(buf, d, 10)
	}
	return append(buf, ']')
}

// appendData appends t's elements as a flat JSON array.
func appendData(buf []byte, t tensor.Tensor) []byte {
	d := t.Data
	buf = append(buf, '[')
	switch t.DataType {
	case tensor.Bool:
		for i, b := range d {
			if i > 0 {
				buf = append(buf, ',')
			}
			if b != 0 {
				buf = append(buf, "true"...)
			} else {
				buf = append(buf, "false"...)
			}
		}
	case tensor.Uint8:
		for i, b := range d {
			buf = sep(buf, i)
			buf = strconv.AppendUint(buf, uint64(b), 10)
		}
	case tensor.Int8:
		for i, b := range d {
			buf = sep(buf, i)
			buf = strconv.AppendInt(buf, int64(int8(b)), 10)
		}
	case tensor.Uint16:
		for i := 0; i+2 <= len(d); i += 2 {
			buf = sep(buf, i)
			buf = strconv.AppendUint(buf, uint64(binary.LittleEndian.Uint16(d[i:])), 10)
		}
	case tensor.Int16:
		for i := 0; i+2 <= len(d); i += 2 {
			buf = sep(buf, i)
			buf = strconv.AppendInt(buf, int64(int16(binary.LittleEndian.Uint16(d[i:]))), 10)
		}
	case tensor.Uint32:
		for i := 0; i+4 <= len(d); i += 4 {
			buf = sep(buf, i)
			buf = strconv.AppendUint(buf, uint64(binary.LittleEndian.Uint32(d[i:])), 10)
		}
	case tensor.Int32:
		for i := 0; i+4 <= len(d); i += 4 {
			buf = sep(buf, i)
			buf = strconv.AppendInt(buf, int64(int32(binary.LittleEndian.Uint32(d[i:]))), 10)
		}
	case tensor.Uint64:
		for i := 0; i+8 <= len(d); i += 8 {
			buf = sep(buf, i)
			buf = strconv.AppendUint(buf, binary.LittleEndian.Uint64(d[i:]), 10)
		}
	case tensor.Int64:
		for i := 0; i+8 <= len(d); i += 8 {
			buf = sep(buf, i)
			buf = strconv.AppendInt(buf, int64(binary.LittleEndian.Uint64(d[i:])), 10)
		}
	case tensor.FP16:
		for i := 0; i+2 <= len(d); i += 2 {
			buf = sep(buf, i)
			buf = appendFloat(buf, float64(tensor.FP16ToFloat32(binary.LittleEndian.Uint16(d[i:]))), 32)
		}
	case tensor.BF16:
		for i := 0; i+2 <= len(d); i += 2 {
			buf = sep(buf, i)
			buf = appendFloat(buf, float64(tensor.BF16ToFloat32(binary.LittleEndian.Uint16(d[i:]))), 32)
		}
	case tensor.FP32:
		for i := 0; i+4 <= len(d); i += 4 {
			buf = sep(buf, i)
			buf = appendFloat(buf, float64(math.Float32frombits(binary.LittleEndian.Uint32(d[i:]))), 32)
		}
	case tensor.FP64:
		for i := 0; i+8 <= len(d); i += 8 {
			buf = sep(buf, i)
			buf = appendFloat(buf, math.Float64frombits(binary.LittleEndian.Uint64(d[i:])), 64)
		}
	case tensor.Bytes:
		for i, off := 0, 0; off+4 <= len(d); i++ {
			n := int(binary.LittleEndian.Uint32(d[off:]))
			off += 4
			if n > len(d)-off {
				break
			}
			buf = sep(buf, i)
			buf = appendString(buf, d[off:off+n])
			off += n
		}
	}
	return append(buf, ']')
}

func sep(buf []byte, i int) []byte {
	if i > 0 {
		return append(buf, ',')
	}
	return buf
}

func appendFloat(buf []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(buf, "null"...)
	}
	return strconv.AppendFloat(buf, f, 'g', -1, bits)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, so
// the document stays valid whatever bytes a BYTES tensor holds.
func appendString[T string | []byte](buf []byte, s T) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		var tmp [utf8.UTFMax]byte
		r, size := utf8.DecodeRune(tmp[:copy(tmp[:], s[i:])])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
