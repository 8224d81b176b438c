package grpcapi

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// decodeInputs turns a request's inputs into tensors. Raw contents are
// aliased, not copied: the request message outlives the Infer call that
// reads them, and the codec already gave the message its own copy of the
// wire bytes. lim is checked before anything is allocated for
// an input. The tensors go in dst when it is long enough.
func decodeInputs(req *inference.ModelInferRequest, lim guard.Limits, dst []tensor.Tensor) ([]tensor.Tensor, error) {
	if err := lim.CheckInputs(len(req.GetInputs())); err != nil {
		return nil, err
	}
	raw := req.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(req.GetInputs()) {
		return nil, tensor.Invalidf("raw_input_contents has %d entries for %d inputs; it needs exactly one per input, in the order of inputs",
			len(raw), len(req.GetInputs()))
	}
	n := len(req.GetInputs())
	var out []tensor.Tensor
	if n <= len(dst) {
		out = dst[:n:n]
	} else {
		out = make([]tensor.Tensor, n)
	}
	var arena []byte
	if len(raw) == 0 {
		arena = contentsArena(req.GetInputs(), lim)
	}
	for i, in := range req.GetInputs() {
		dt, ok := tensor.ParseDataType(in.GetDatatype())
		if !ok {
			return nil, tensor.Invalidf("input %q: unknown datatype %q", in.GetName(), in.GetDatatype())
		}
		var err error
		if len(raw) > 0 {
			if f, n := setField(in.GetContents()); n > 0 {
				return nil, tensor.Invalidf("input %q: contents.%s is set although the request uses raw_input_contents; send each input one way only",
					in.GetName(), f)
			}
			out[i], err = decodeRaw(in.GetName(), dt, in.GetShape(), raw[i], i, lim)
		} else {
			out[i], err = decodeContents(in.GetName(), dt, in.GetShape(), in.GetContents(), lim, &arena)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// decodeRaw checks raw_input_contents[index] against the shape and datatype
// and wraps it as a tensor without copying.
func decodeRaw(name string, dt tensor.DataType, shape []int64, raw []byte, index int, lim guard.Limits) (tensor.Tensor, error) {
	n, err := tensor.ElementCount(shape)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("input %q: %w", name, err)
	}
	if err := lim.CheckTensor(tensor.Tensor{Name: name, DataType: dt, Shape: shape, Data: raw}); err != nil {
		return tensor.Tensor{}, err
	}
	if dt == tensor.Bytes {
		if err := checkBytes(raw, n); err != nil {
			return tensor.Tensor{}, tensor.Invalidf("input %q: raw_input_contents[%d]: %v", name, index, err)
		}
	} else if want := n * int64(dt.Size()); int64(len(raw)) != want {
		return tensor.Tensor{}, tensor.Invalidf("input %q: shape %s of %s needs %d bytes, raw_input_contents[%d] has %d",
			name, formatShape(shape), dt, want, index, len(raw))
	}
	return tensor.Tensor{Name: name, DataType: dt, Shape: shape, Data: raw}, nil
}

// checkBytes walks n length-prefixed BYTES elements, which must fill data
// exactly.
func checkBytes(data []byte, n int64) error {
	off := 0
	for i := int64(0); i < n; i++ {
		if len(data)-off < 4 {
			return fmt.Errorf("BYTES element %d: missing 4-byte length prefix (%d bytes left)", i, len(data)-off)
		}
		l := binary.LittleEndian.Uint32(data[off:])
		off += 4
		if uint64(l) > uint64(len(data)-off) {
			return fmt.Errorf("BYTES element %d: length %d exceeds the %d bytes left", i, l, len(data)-off)
		}
		off += int(l)
	}
	if off != len(data) {
		return fmt.Errorf("%d bytes after the %d BYTES elements of the shape", len(data)-off, n)
	}
	return nil
}

// contentsField names one repeated field of InferTensorContents.
type contentsField int

const (
	fieldBool contentsField = iota
	fieldInt
	fieldInt64
	fieldUint
	fieldUint64
	fieldFP32
	fieldFP64
	fieldBytes
	fieldCount
)

var fieldNames = [fieldCount]string{
	fieldBool:   "bool_contents",
	fieldInt:    "int_contents",
	fieldInt64:  "int64_contents",
	fieldUint:   "uint_contents",
	fieldUint64: "uint64_contents",
	fieldFP32:   "fp32_contents",
	fieldFP64:   "fp64_contents",
	fieldBytes:  "bytes_contents",
}

func (f contentsField) String() string { return fieldNames[f] }

// fieldFor is the contents field that carries a datatype's elements.
func fieldFor(dt tensor.DataType) contentsField {
	switch dt {
	case tensor.Bool:
		return fieldBool
	case tensor.Int8, tensor.Int16, tensor.Int32:
		return fieldInt
	case tensor.Int64:
		return fieldInt64
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		return fieldUint
	case tensor.Uint64:
		return fieldUint64
	case tensor.FP16, tensor.BF16, tensor.FP32:
		return fieldFP32
	case tensor.FP64:
		return fieldFP64
	default:
		return fieldBytes
	}
}

// fieldLens returns the element count of every contents field.
func fieldLens(c *inference.InferTensorContents) [fieldCount]int {
	return [fieldCount]int{
		fieldBool:   len(c.GetBoolContents()),
		fieldInt:    len(c.GetIntContents()),
		fieldInt64:  len(c.GetInt64Contents()),
		fieldUint:   len(c.GetUintContents()),
		fieldUint64: len(c.GetUint64Contents()),
		fieldFP32:   len(c.GetFp32Contents()),
		fieldFP64:   len(c.GetFp64Contents()),
		fieldBytes:  len(c.GetBytesContents()),
	}
}

// setField returns the first non-empty contents field and its length, or a
// length of 0 when every field is empty.
func setField(c *inference.InferTensorContents) (contentsField, int) {
	if c == nil {
		return 0, 0
	}
	for f, n := range fieldLens(c) {
		if n > 0 {
			return contentsField(f), n
		}
	}
	return 0, 0
}

// contentsArena returns one zeroed block for the data of every fixed-size
// input with typed contents, so that they take one allocation between them,
// when there are two or more and each passes decodeContents's element
// checks; else nil, and each input allocates its own.
func contentsArena(ins []*inference.ModelInferRequest_InferInputTensor, lim guard.Limits) []byte {
	var size int64
	count := 0
	for _, in := range ins {
		dt, ok := tensor.ParseDataType(in.GetDatatype())
		if !ok {
			return nil
		}
		if dt == tensor.Bytes {
			continue
		}
		n, err := tensor.ElementCount(in.GetShape())
		if err != nil || lim.CheckElements(in.GetName(), n) != nil || int64(fieldLens(in.GetContents())[fieldFor(dt)]) != n {
			return nil
		}
		size += n * int64(dt.Size())
		count++
	}
	if count < 2 {
		return nil
	}
	return make([]byte, size)
}

// carve takes size zeroed bytes from the front of *arena when it has them,
// else allocates them.
func carve(arena *[]byte, size int64) []byte {
	if a := *arena; int64(len(a)) >= size {
		*arena = a[size:]
		return a[:size:size]
	}
	return make([]byte, size)
}

// decodeContents converts typed contents into a tensor's raw layout,
// checking the field against the datatype, the element count against the
// shape and each value against the datatype's range. Fixed-size data is
// carved from arena (see contentsArena).
func decodeContents(name string, dt tensor.DataType, shape []int64, c *inference.InferTensorContents, lim guard.Limits, arena *[]byte) (tensor.Tensor, error) {
	n, err := tensor.ElementCount(shape)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("input %q: %w", name, err)
	}
	if err := lim.CheckElements(name, n); err != nil {
		return tensor.Tensor{}, err
	}
	want := fieldFor(dt)
	lens := fieldLens(c)
	for f, l := range lens {
		if l > 0 && contentsField(f) != want {
			return tensor.Tensor{}, tensor.Invalidf("input %q: datatype %s takes contents.%s, but contents.%s is set",
				name, dt, want, contentsField(f))
		}
	}
	if c == nil && n > 0 {
		return tensor.Tensor{}, tensor.Invalidf("input %q: no data: shape %s needs %d elements and neither contents nor raw_input_contents is set",
			name, formatShape(shape), n)
	}
	if int64(lens[want]) != n {
		return tensor.Tensor{}, tensor.Invalidf("input %q: shape %s needs %d elements, %s has %d",
			name, formatShape(shape), n, want, lens[want])
	}
	t := tensor.Tensor{Name: name, DataType: dt, Shape: shape}
	if dt == tensor.Bytes {
		size := 0
		for i, e := range c.GetBytesContents() {
			if uint64(len(e)) > math.MaxUint32 {
				return tensor.Tensor{}, tensor.Invalidf("input %q: bytes_contents element longer than 4 GiB", name)
			}
			if err := lim.CheckBytesElement(name, int64(i), int64(len(e))); err != nil {
				return tensor.Tensor{}, err
			}
			size += 4 + len(e)
		}
		t.Data = make([]byte, 0, size)
		for _, e := range c.GetBytesContents() {
			t.Data = tensor.AppendBytesElement(t.Data, e)
		}
		return t, nil
	}
	t.Data = carve(arena, n*int64(dt.Size()))
	if err := fillFixed(t.Data, name, dt, c); err != nil {
		return tensor.Tensor{}, err
	}
	return t, nil
}

// fillFixed writes the elements of the datatype's contents field into dst,
// which has exactly the right size.
func fillFixed(dst []byte, name string, dt tensor.DataType, c *inference.InferTensorContents) error {
	le := binary.LittleEndian
	switch dt {
	case tensor.Bool:
		for i, v := range c.GetBoolContents() {
			if v {
				dst[i] = 1
			}
		}
	case tensor.Int8, tensor.Int16, tensor.Int32:
		lo, hi := intRange(dt)
		for i, v := range c.GetIntContents() {
			if v < lo || v > hi {
				return tensor.Invalidf("input %q: int_contents[%d] = %d is out of range for %s", name, i, v, dt)
			}
			switch dt {
			case tensor.Int8:
				dst[i] = byte(int8(v))
			case tensor.Int16:
				le.PutUint16(dst[2*i:], uint16(int16(v)))
			default:
				le.PutUint32(dst[4*i:], uint32(v))
			}
		}
	case tensor.Int64:
		for i, v := range c.GetInt64Contents() {
			le.PutUint64(dst[8*i:], uint64(v))
		}
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		hi := uint32(math.MaxUint32)
		if dt == tensor.Uint8 {
			hi = math.MaxUint8
		} else if dt == tensor.Uint16 {
			hi = math.MaxUint16
		}
		for i, v := range c.GetUintContents() {
			if v > hi {
				return tensor.Invalidf("input %q: uint_contents[%d] = %d is out of range for %s", name, i, v, dt)
			}
			switch dt {
			case tensor.Uint8:
				dst[i] = byte(v)
			case tensor.Uint16:
				le.PutUint16(dst[2*i:], uint16(v))
			default:
				le.PutUint32(dst[4*i:], v)
			}
		}
	case tensor.Uint64:
		for i, v := range c.GetUint64Contents() {
			le.PutUint64(dst[8*i:], v)
		}
	case tensor.FP32:
		for i, v := range c.GetFp32Contents() {
			le.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case tensor.FP16:
		for i, v := range c.GetFp32Contents() {
			le.PutUint16(dst[2*i:], tensor.Float32ToFP16(v))
		}
	case tensor.BF16:
		for i, v := range c.GetFp32Contents() {
			le.PutUint16(dst[2*i:], tensor.Float32ToBF16(v))
		}
	case tensor.FP64:
		for i, v := range c.GetFp64Contents() {
			le.PutUint64(dst[8*i:], math.Float64bits(v))
		}
	}
	return nil
}

func intRange(dt tensor.DataType) (lo, hi int32) {
	switch dt {
	case tensor.Int8:
		return math.MinInt8, math.MaxInt8
	case tensor.Int16:
		return math.MinInt16, math.MaxInt16
	default:
		return math.MinInt32, math.MaxInt32
	}
}

// formatShape writes a shape as the protocol's JSON does: [1,16].
func formatShape(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteByte(']')
	return b.String()
}
