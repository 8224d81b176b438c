package tensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrInvalid is wrapped by every validation error of this package, so callers
// can map bad input to a client error without parsing messages.
var ErrInvalid = errors.New("invalid tensor")

// MaxElements bounds the element count of any one tensor; it keeps shape
// arithmetic far from overflow whatever a client sends.
const MaxElements = 1 << 40

type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Unwrap() error { return ErrInvalid }

// Invalidf returns an error that wraps ErrInvalid with a formatted message
// that should name the tensor and field at fault.
func Invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Tensor is one named tensor. Data holds the elements in row-major order,
// little-endian. For BYTES, each element is a 4-byte little-endian length
// followed by that many bytes: the v2 protocol's raw layout, so gRPC raw
// contents and the HTTP binary extension need no conversion.
//
// A Tensor is a value; its Data may be shared with other tensors (Split
// returns views), so treat Data as read-only once built.
type Tensor struct {
	Name     string
	DataType DataType
	Shape    []int64
	Data     []byte
}

// ElementCount returns the number of elements a shape describes. Negative
// dimensions, and products beyond MaxElements, are errors.
func ElementCount(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, Invalidf("shape %v: dimension %d is negative", shape, i)
		}
		if d != 0 && n > MaxElements/d {
			return 0, Invalidf("shape %v: more than %d elements", shape, int64(MaxElements))
		}
		n *= d
	}
	return n, nil
}

// Validate checks that t's data type is valid and that Data holds exactly the
// elements its shape describes; for BYTES it walks the length prefixes.
func (t Tensor) Validate() error {
	if !t.DataType.Valid() {
		return Invalidf("tensor %q: invalid datatype", t.Name)
	}
	n, err := ElementCount(t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if t.DataType == Bytes {
		if _, err := bytesEnd(t.Data, n); err != nil {
			return Invalidf("tensor %q: %v", t.Name, err)
		}
		return nil
	}
	want := n * int64(t.DataType.Size())
	if int64(len(t.Data)) != want {
		return Invalidf("tensor %q: shape %v of %s needs %d bytes of data, got %d",
			t.Name, t.Shape, t.DataType, want, len(t.Data))
	}
	return nil
}

// bytesEnd walks n length-prefixed elements and requires that they fill data
// exactly, returning len(data).
func bytesEnd(data []byte, n int64) (int, error) {
	off, err := bytesOffset(data, n)
	if err != nil {
		return 0, err
	}
	if off != len(data) {
		return 0, fmt.Errorf("BYTES data holds more than the %d elements of its shape (%d trailing bytes)", n, len(data)-off)
	}
	return off, nil
}

// bytesOffset returns the byte offset just past the first n elements.
func bytesOffset(data []byte, n int64) (int, error) {
	off := 0
	for i := int64(0); i < n; i++ {
		if len(data)-off < 4 {
			return 0, fmt.Errorf("BYTES element %d: missing 4-byte length prefix", i)
		}
		l := binary.LittleEndian.Uint32(data[off:])
		off += 4
		if uint64(l) > uint64(len(data)-off) {
			return 0, fmt.Errorf("BYTES element %d: length %d exceeds the %d bytes left", i, l, len(data)-off)
		}
		off += int(l)
	}
	return off, nil
}

// BytesElements returns the n elements of a BYTES buffer as sub-slices of
// data (no copy).
func BytesElements(data []byte, n int64) ([][]byte, error) {
	if n < 0 || n > int64(len(data))/4 {
		return nil, Invalidf("BYTES data of %d bytes cannot hold %d elements", len(data), n)
	}
	out := make([][]byte, n)
	off := 0
	for i := range out {
		if len(data)-off < 4 {
			return nil, Invalidf("BYTES element %d: missing 4-byte length prefix", i)
		}
		l := binary.LittleEndian.Uint32(data[off:])
		off += 4
		if uint64(l) > uint64(len(data)-off) {
			return nil, Invalidf("BYTES element %d: length %d exceeds the %d bytes left", i, l, len(data)-off)
		}
		out[i] = data[off : off+int(l) : off+int(l)]
		off += int(l)
	}
	if off != len(data) {
		return nil, Invalidf("BYTES data holds more than %d elements", n)
	}
	return out, nil
}

// AppendBytesElement appends one length-prefixed BYTES element to dst.
func AppendBytesElement(dst, elem []byte) []byte {
	if uint64(len(elem)) > math.MaxUint32 {
		panic("tensor: BYTES element longer than 4 GiB")
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(elem)))
	return append(dst, elem...)
}

// Spec is a model's declared input or output: a dimension of -1 accepts any
// size.
type Spec struct {
	Name     string
	DataType DataType
	Shape    []int64
}

// Check reports whether t matches the spec's data type, rank and fixed
// dimensions. A declared scalar (shape []) also accepts shape [1], as ONNX
// Runtime does; see Conform. It does not look at t.Data; call Validate for
// that.
func (s Spec) Check(t Tensor) error {
	if t.DataType != s.DataType {
		return Invalidf("input %q: datatype %s does not match the model's %s", t.Name, t.DataType, s.DataType)
	}
	if len(s.Shape) == 0 && len(t.Shape) == 1 && t.Shape[0] == 1 {
		return nil
	}
	if len(t.Shape) != len(s.Shape) {
		return Invalidf("input %q: shape %v has rank %d, the model expects rank %d %v", t.Name, t.Shape, len(t.Shape), len(s.Shape), s.Shape)
	}
	for i, d := range s.Shape {
		if d >= 0 && t.Shape[i] != d {
			return Invalidf("input %q: shape %v does not match the model's %v at dimension %d", t.Name, t.Shape, s.Shape, i)
		}
	}
	return nil
}

// Conform returns t with the spec's rank where Check accepted another
// spelling of the same value: a one-element [1] for a declared scalar
// becomes shape []. t must have passed Check.
func (s Spec) Conform(t Tensor) Tensor {
	if len(s.Shape) == 0 && len(t.Shape) != 0 {
		t.Shape = []int64{}
	}
	return t
}
