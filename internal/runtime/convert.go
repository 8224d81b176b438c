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
// refusing what a Session could not pass: non-tensor values, element types
// without a v2 data type, and rank 0. The binding reports both a scalar and a
// tensor of unknown rank as rank 0, and it cannot build a rank-0 value.
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
		return tensor.Spec{}, fmt.Errorf("%s %q is a scalar or has no declared shape; the server needs tensors of rank 1 or more: %w",
			kind, info.Name, ErrUnsupportedType)
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
