package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	goruntime "runtime"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// ErrUnsupportedType is wrapped by Load when a model declares an input or
// output whose element type (complex, float8, 4-bit integers...) or kind
// (sequence, map...) has no v2 protocol data type.
var ErrUnsupportedType = errors.New("unsupported type")

// elementTypes maps each ONNX element type the server can carry to its v2
// data type.
var elementTypes = map[ort.TensorElementDataType]tensor.DataType{
	ort.TensorElementDataTypeBool:     tensor.Bool,
	ort.TensorElementDataTypeUint8:    tensor.Uint8,
	ort.TensorElementDataTypeUint16:   tensor.Uint16,
	ort.TensorElementDataTypeUint32:   tensor.Uint32,
	ort.TensorElementDataTypeUint64:   tensor.Uint64,
	ort.TensorElementDataTypeInt8:     tensor.Int8,
	ort.TensorElementDataTypeInt16:    tensor.Int16,
	ort.TensorElementDataTypeInt32:    tensor.Int32,
	ort.TensorElementDataTypeInt64:    tensor.Int64,
	ort.TensorElementDataTypeFloat16:  tensor.FP16,
	ort.TensorElementDataTypeFloat:    tensor.FP32,
	ort.TensorElementDataTypeDouble:   tensor.FP64,
	ort.TensorElementDataTypeBFloat16: tensor.BF16,
	ort.TensorElementDataTypeString:   tensor.Bytes,
}

// onnxTypes is elementTypes reversed, indexed by tensor.DataType.
var onnxTypes = func() [tensor.Bytes + 1]ort.TensorElementDataType {
	var out [tensor.Bytes + 1]ort.TensorElementDataType
	for o, d := range elementTypes {
		out[d] = o
	}
	return out
}()

// specFromInfo turns one declared input or output into a tensor.Spec,
// refusing what a Session could not pass: non-tensor values and element
// types without a v2 data type. Rank 0 is a scalar (shape []). ONNX Runtime
// reports a tensor of unknown rank as rank 0 too; such an input or output is
// served as a scalar, and a run that makes it something else fails with
// ONNX Runtime's reason. A scalar output must have a type the binding can
// hold as a Go scalar (not FP16, BF16 or BYTES).
func specFromInfo(kind string, info ort.InputOutputInfo) (tensor.Spec, error) {
	if info.OrtValueType != ort.ONNXTypeTensor {
		return tensor.Spec{}, fmt.Errorf("%s %q is a %s, not a dense tensor: %w",
			kind, info.Name, ort.ONNXType(info.OrtValueType), ErrUnsupportedType)
	}
	dt, ok := elementTypes[info.DataType]
	if !ok {
		return tensor.Spec{}, fmt.Errorf("%s %q has element type %s, which has no v2 protocol data type: %w",
			kind, info.Name, elementTypeName(info.DataType), ErrUnsupportedType)
	}
	if len(info.Dimensions) == 0 {
		if kind == "output" && (dt == tensor.FP16 || dt == tensor.BF16 || dt == tensor.Bytes) {
			return tensor.Spec{}, fmt.Errorf("output %q is a %s scalar (or has no declared shape); scalar outputs of this type are not supported: %w",
				info.Name, dt, ErrUnsupportedType)
		}
		return tensor.Spec{Name: info.Name, DataType: dt, Shape: []int64{}}, nil
	}
	shape := make([]int64, len(info.Dimensions))
	for i, d := range info.Dimensions {
		if d < 0 {
			d = -1
		}
		shape[i] = d
	}
	return tensor.Spec{Name: info.Name, DataType: dt, Shape: shape}, nil
}

// elementTypeName names an ONNX element type the way ONNX does ("COMPLEX64").
func elementTypeName(t ort.TensorElementDataType) string {
	const prefix = "ONNX_TENSOR_ELEMENT_DATA_TYPE_"
	s := t.String()
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}

// newInput wraps t, already validated against its spec, as an ONNX Runtime
// value. Numeric data is not copied: ONNX Runtime reads t.Data in place, so
// it is pinned until the caller unpins after the run.
func newInput(t tensor.Tensor, pinner *goruntime.Pinner) (ort.Value, error) {
	shape := ort.Shape(t.Shape)
	if len(shape) == 0 {
		if v, ok, err := newScalarInput(t); ok {
			return v, err
		}
		// FP16, BF16 and BYTES have no Go scalar in the binding: ONNX
		// Runtime takes a one-element [1] for a declared scalar.
		t.Shape = []int64{1}
		shape = ort.Shape(t.Shape)
	}
	if t.DataType == tensor.Bytes {
		return newStringInput(t)
	}
	data := t.Data
	if len(data) == 0 {
		// An empty tensor still needs a buffer: the binding refuses a
		// zero-length one, and ONNX Runtime reads none of it.
		data = make([]byte, 1)
	}
	pinner.Pin(unsafe.SliceData(data))
	v, err := ort.NewCustomDataTensor(shape, data, onnxTypes[t.DataType])
	if err != nil {
		return nil, fmt.Errorf("input %q: %w", t.Name, err)
	}
	return v, nil
}

// newStringInput copies a BYTES tensor into an ONNX Runtime string tensor.
// ONNX Runtime takes strings as NUL-terminated C strings, so an element
// holding a NUL byte cannot be passed and is refused rather than truncated.
func newStringInput(t tensor.Tensor) (ort.Value, error) {
	n, err := tensor.ElementCount(t.Shape)
	if err != nil {
		return nil, err
	}
	elems, err := tensor.BytesElements(t.Data, n)
	if err != nil {
		return nil, fmt.Errorf("input %q: %w", t.Name, err)
	}
	strs := make([]string, len(elems))
	for i, e := range elems {
		if bytes.IndexByte(e, 0) >= 0 {
			return nil, tensor.Invalidf("input %q: BYTES element %d holds a NUL byte, which ONNX Runtime string tensors cannot carry", t.Name, i)
		}
		if len(e) > 0 {
			// SetContents copies each string into C memory before it
			// returns, so a view of t.Data (read-only by contract)
			// saves a copy.
			strs[i] = unsafe.String(unsafe.SliceData(e), len(e))
		}
	}
	st, err := ort.NewStringTensor(ort.Shape(t.Shape))
	if err != nil {
		return nil, fmt.Errorf("input %q: %w", t.Name, err)
	}
	if err := st.SetContents(strs); err != nil {
		_ = st.Destroy()
		return nil, fmt.Errorf("input %q: %w", t.Name, err)
	}
	return st, nil
}

// fromOutput converts an output value the binding allocated into a Tensor
// whose Data is Go memory owned by the caller. Numeric values are already
// Go slices (the binding copies ONNX Runtime's buffer into one); they are
// reinterpreted as bytes without another copy, and outlive v.Destroy, which
// only releases the ONNX Runtime value around them.
func fromOutput(spec tensor.Spec, v ort.Value) (tensor.Tensor, error) {
	out := tensor.Tensor{Name: spec.Name, Shape: []int64(v.GetShape())}
	switch x := v.(type) {
	case *ort.Tensor[bool]:
		out.DataType, out.Data = tensor.Bool, asBytes(x.GetData())
	case *ort.Tensor[uint8]:
		out.DataType, out.Data = tensor.Uint8, asBytes(x.GetData())
	case *ort.Tensor[uint16]:
		out.DataType, out.Data = tensor.Uint16, asBytes(x.GetData())
	case *ort.Tensor[uint32]:
		out.DataType, out.Data = tensor.Uint32, asBytes(x.GetData())
	case *ort.Tensor[uint64]:
		out.DataType, out.Data = tensor.Uint64, asBytes(x.GetData())
	case *ort.Tensor[int8]:
		out.DataType, out.Data = tensor.Int8, asBytes(x.GetData())
	case *ort.Tensor[int16]:
		out.DataType, out.Data = tensor.Int16, asBytes(x.GetData())
	case *ort.Tensor[int32]:
		out.DataType, out.Data = tensor.Int32, asBytes(x.GetData())
	case *ort.Tensor[int64]:
		out.DataType, out.Data = tensor.Int64, asBytes(x.GetData())
	case *ort.Tensor[float32]:
		out.DataType, out.Data = tensor.FP32, asBytes(x.GetData())
	case *ort.Tensor[float64]:
		out.DataType, out.Data = tensor.FP64, asBytes(x.GetData())
	case *ort.StringTensor:
		strs, err := x.GetContents()
		if err != nil {
			return tensor.Tensor{}, fmt.Errorf("output %q: %w", spec.Name, err)
		}
		size := 4 * len(strs)
		for _, s := range strs {
			size += len(s)
		}
		data := make([]byte, 0, size)
		for _, s := range strs {
			data = tensor.AppendBytesElement(data, unsafe.Slice(unsafe.StringData(s), len(s)))
		}
		out.DataType, out.Data = tensor.Bytes, data
	default:
		return tensor.Tensor{}, fmt.Errorf("output %q: ONNX Runtime returned an unexpected %s value", spec.Name, ort.ONNXType(v.GetONNXType()))
	}
	if out.DataType != spec.DataType {
		return tensor.Tensor{}, fmt.Errorf("output %q: ONNX Runtime returned %s, the model declares %s", spec.Name, out.DataType, spec.DataType)
	}
	return out, nil
}

// asBytes views a numeric slice as its little-endian bytes (the host's order,
// which Init checks).
func asBytes[T any](d []T) []byte {
	if len(d) == 0 {
		return []byte{}
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(d))), len(d)*int(unsafe.Sizeof(zero)))
}

// destroyAll releases every value that was created, whatever happened. When
// the binding fails to convert an output it leaves a nil pointer in a
// non-nil Value, which must not be destroyed.
func destroyAll(vs []ort.Value) {
	for i, v := range vs {
		if v != nil && !reflect.ValueOf(v).IsNil() {
			_ = v.Destroy()
		}
		vs[i] = nil
	}
}

// newScalarInput makes a rank-0 value of t (shape [], one element); ok is
// false for the types the binding has no Go scalar for.
func newScalarInput(t tensor.Tensor) (ort.Value, bool, error) {
	if t.DataType == tensor.FP16 || t.DataType == tensor.BF16 || t.DataType == tensor.Bytes {
		return nil, false, nil
	}
	if len(t.Data) != t.DataType.Size() {
		return nil, true, tensor.Invalidf("input %q: a scalar %s needs %d bytes, got %d", t.Name, t.DataType, t.DataType.Size(), len(t.Data))
	}
	var v ort.Value
	var err error
	switch t.DataType {
	case tensor.Bool:
		v, err = ort.NewScalar(t.Data[0] != 0)
	case tensor.Uint8:
		v, err = scalarFrom[uint8](t.Data)
	case tensor.Uint16:
		v, err = scalarFrom[uint16](t.Data)
	case tensor.Uint32:
		v, err = scalarFrom[uint32](t.Data)
	case tensor.Uint64:
		v, err = scalarFrom[uint64](t.Data)
	case tensor.Int8:
		v, err = scalarFrom[int8](t.Data)
	case tensor.Int16:
		v, err = scalarFrom[int16](t.Data)
	case tensor.Int32:
		v, err = scalarFrom[int32](t.Data)
	case tensor.Int64:
		v, err = scalarFrom[int64](t.Data)
	case tensor.FP32:
		v, err = scalarFrom[float32](t.Data)
	case tensor.FP64:
		v, err = scalarFrom[float64](t.Data)
	default:
		return nil, false, nil
	}
	if err != nil {
		return nil, true, fmt.Errorf("input %q: %w", t.Name, err)
	}
	return v, true, nil
}

// scalarFrom reads one T from little-endian bytes (the host's order) into
// a new rank-0 value.
func scalarFrom[T ort.TensorData](b []byte) (ort.Value, error) {
	return ort.NewScalar(*(*T)(unsafe.Pointer(unsafe.SliceData(b))))
}

// newScalarOutput makes a rank-0 value of type dt for ONNX Runtime to write
// a scalar output into, and a function that copies its value out as bytes
// after the run. specFromInfo refused the types it cannot make.
func newScalarOutput(dt tensor.DataType) (ort.Value, func() []byte, error) {
	switch dt {
	case tensor.Bool:
		return scalarOut[bool]()
	case tensor.Uint8:
		return scalarOut[uint8]()
	case tensor.Uint16:
		return scalarOut[uint16]()
	case tensor.Uint32:
		return scalarOut[uint32]()
	case tensor.Uint64:
		return scalarOut[uint64]()
	case tensor.Int8:
		return scalarOut[int8]()
	case tensor.Int16:
		return scalarOut[int16]()
	case tensor.Int32:
		return scalarOut[int32]()
	case tensor.Int64:
		return scalarOut[int64]()
	case tensor.FP32:
		return scalarOut[float32]()
	case tensor.FP64:
		return scalarOut[float64]()
	}
	return nil, nil, fmt.Errorf("scalar output of type %s: %w", dt, ErrUnsupportedType)
}

func scalarOut[T ort.TensorData]() (ort.Value, func() []byte, error) {
	var zero T
	s, err := ort.NewScalar(zero)
	if err != nil {
		return nil, nil, err
	}
	return s, func() []byte { return append([]byte(nil), asBytes([]T{s.GetData()})...) }, nil
}
