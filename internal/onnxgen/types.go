package onnxgen

// ONNX tensor element types (TensorProto.DataType). The values are fixed by
// the ONNX format.
const (
	Float    int32 = 1
	Uint8    int32 = 2
	Int8     int32 = 3
	Uint16   int32 = 4
	Int16    int32 = 5
	Int32    int32 = 6
	Int64    int32 = 7
	String   int32 = 8
	Bool     int32 = 9
	Float16  int32 = 10
	Double   int32 = 11
	Uint32   int32 = 12
	Uint64   int32 = 13
	Bfloat16 int32 = 16
)

// elemTypes lists every element type this package writes, in numeric order,
// with its name as the KServe v2 protocol spells it and its width in bytes
// (0 for STRING, whose elements have no fixed width).
var elemTypes = []struct {
	t    int32
	name string
	size int
}{
	{Float, "FP32", 4},
	{Uint8, "UINT8", 1},
	{Int8, "INT8", 1},
	{Uint16, "UINT16", 2},
	{Int16, "INT16", 2},
	{Int32, "INT32", 4},
	{Int64, "INT64", 8},
	{String, "BYTES", 0},
	{Bool, "BOOL", 1},
	{Float16, "FP16", 2},
	{Double, "FP64", 8},
	{Uint32, "UINT32", 4},
	{Uint64, "UINT64", 8},
	{Bfloat16, "BF16", 2},
}

// ElemTypes returns every element type this package can write, in numeric
// order. The slice is new on each call, so callers may modify it.
func ElemTypes() []int32 {
	out := make([]int32, len(elemTypes))
	for i, e := range elemTypes {
		out[i] = e.t
	}
	return out
}

// ElemTypeName returns the KServe v2 name of an ONNX element type ("FP32",
// "BYTES", ...), or "" for a type this package does not write.
func ElemTypeName(t int32) string {
	for _, e := range elemTypes {
		if e.t == t {
			return e.name
		}
	}
	return ""
}

// ElemSize returns the width in bytes of one element of type t in raw
// tensor data, or 0 for STRING and for unknown types.
func ElemSize(t int32) int {
	for _, e := range elemTypes {
		if e.t == t {
			return e.size
		}
	}
	return 0
}
