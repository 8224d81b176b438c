package grpcapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// sample is one datatype's test values as typed contents and the raw
// little-endian bytes they must become, written out independently of the
// decoder.
type sample struct {
	dt       tensor.DataType
	contents *inference.InferTensorContents
	raw      []byte
}

func le16(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

func le32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func le64(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func i64(v int64) uint64 { return uint64(v) }

// samples has three elements of every datatype, including each range's
// extremes.
func samples() []sample {
	return []sample{
		{tensor.Bool, &inference.InferTensorContents{BoolContents: []bool{true, false, true}}, []byte{1, 0, 1}},
		{tensor.Int8, &inference.InferTensorContents{IntContents: []int32{-128, 0, 127}}, []byte{0x80, 0, 0x7f}},
		{tensor.Int16, &inference.InferTensorContents{IntContents: []int32{-32768, 1, 32767}}, le16(0x8000, 1, 0x7fff)},
		{tensor.Int32, &inference.InferTensorContents{IntContents: []int32{math.MinInt32, 0, 7}}, le32(0x80000000, 0, 7)},
		{tensor.Int64, &inference.InferTensorContents{Int64Contents: []int64{-1 << 40, 0, math.MaxInt64}}, le64(i64(-1<<40), 0, math.MaxInt64)},
		{tensor.Uint8, &inference.InferTensorContents{UintContents: []uint32{0, 200, 255}}, []byte{0, 200, 255}},
		{tensor.Uint16, &inference.InferTensorContents{UintContents: []uint32{0, 60000, 65535}}, le16(0, 60000, 65535)},
		{tensor.Uint32, &inference.InferTensorContents{UintContents: []uint32{0, 4e9, math.MaxUint32}}, le32(0, 4e9, math.MaxUint32)},
		{tensor.Uint64, &inference.InferTensorContents{Uint64Contents: []uint64{0, 1 << 63, math.MaxUint64}}, le64(0, 1<<63, math.MaxUint64)},
		// 1.5 = 0x3e00, -2 = 0xc000, 0.25 = 0x3400 in IEEE half precision.
		{tensor.FP16, &inference.InferTensorContents{Fp32Contents: []float32{1.5, -2, 0.25}}, le16(0x3e00, 0xc000, 0x3400)},
		// bfloat16 is the top half of the float32 bits.
		{tensor.BF16, &inference.InferTensorContents{Fp32Contents: []float32{1.5, -2, 0.25}}, le16(0x3fc0, 0xc000, 0x3e80)},
		{tensor.FP32, &inference.InferTensorContents{Fp32Contents: []float32{1.5, -2.25, 3}}, le32(0x3fc00000, 0xc0100000, 0x40400000)},
		{tensor.FP64, &inference.InferTensorContents{Fp64Contents: []float64{1.5, -2.25, 3}}, le64(0x3ff8000000000000, 0xc002000000000000, 0x4008000000000000)},
		{tensor.Bytes, &inference.InferTensorContents{BytesContents: [][]byte{[]byte("a"), {}, []byte("héllo")}},
			append(append(append(le32(1), 'a'), le32(0)...), append(le32(6), "héllo"...)...)},
	}
}

func TestDecodeContentsAllDataTypes(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.dt.String(), func(t *testing.T) {
			got, err := decodeContents("INPUT0", s.dt, []int64{3}, s.contents, guard.Limits{}, new([]byte))
			if err != nil {
				t.Fatalf("decodeContents: %v", err)
			}
			if !bytes.Equal(got.Data, s.raw) {
				t.Fatalf("data = %x, want %x", got.Data, s.raw)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("decoded tensor does not validate: %v", err)
			}
			fromRaw, err := decodeRaw("INPUT0", s.dt, []int64{3}, s.raw, 0, guard.Limits{})
			if err != nil {
				t.Fatalf("decodeRaw: %v", err)
			}
			if !bytes.Equal(fromRaw.Data, got.Data) || fromRaw.DataType != got.DataType {
				t.Fatalf("raw and typed decodings differ: %x vs %x", fromRaw.Data, got.Data)
			}
		})
	}
}

func TestDecodeRawAliases(t *testing.T) {
	raw := le32(1, 2, 3, 4)
	got, err := decodeRaw("x", tensor.Int32, []int64{2, 2}, raw, 0, guard.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if &got.Data[0] != &raw[0] {
		t.Fatal("raw input was copied; it should be aliased")
	}
}

func input(name, dt string, shape []int64, c *inference.InferTensorContents) *inference.ModelInferRequest_InferInputTensor {
	return &inference.ModelInferRequest_InferInputTensor{Name: name, Datatype: dt, Shape: shape, Contents: c}
}

func TestDecodeInputsErrors(t *testing.T) {
	ints := func(n int) *inference.InferTensorContents {
		return &inference.InferTensorContents{IntContents: make([]int32, n)}
	}
	tests := []struct {
		name string
		req  *inference.ModelInferRequest
		want string // exact message
	}{
		{
			name: "element count",
			req:  &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{input("INPUT0", "INT32", []int64{1, 16}, ints(15))}},
			want: `input "INPUT0": shape [1,16] needs 16 elements, int_contents has 15`,
		},
		{
			name: "field does not match datatype",
			req: &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{
				input("INPUT0", "FP32", []int64{2}, &inference.InferTensorContents{IntContents: []int32{1, 2}})}},
			want: `input "INPUT0": datatype FP32 takes contents.fp32_contents, but contents.int_contents is set`,
		},
		{
			name: "two fields",
			req: &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{
				input("INPUT0", "INT64", []int64{1}, &inference.InferTensorContents{Int64Contents: []int64{1}, BytesContents: [][]byte{{1}}})}},
			want: `input "INPUT0": datatype INT64 takes contents.int64_contents, but contents.bytes_contents is set`,
		},
		{
			name: "unknown datatype",
			req:  &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{input("INPUT0", "FLOAT", []int64{1}, nil)}},
			want: `input "INPUT0": unknown datatype "FLOAT"`,
		},
		{
			name: "no data",
			req:  &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{input("INPUT0", "INT32", []int64{2}, nil)}},
			want: `input "INPUT0": no data: shape [2] needs 2 elements and neither contents nor raw_input_contents is set`,
		},
		{
			name: "int8 out of range",
			req: &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{
				input("A", "INT8", []int64{2}, &inference.InferTensorContents{IntContents: []int32{1, 128}})}},
			want: `input "A": int_contents[1] = 128 is out of range for INT8`,
		},
		{
			name: "int16 out of range",
			req: &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{
				input("A", "INT16", []int64{1}, &inference.InferTensorContents{IntContents: []int32{-32769}})}},
			want: `input "A": int_contents[0] = -32769 is out of range for INT16`,
		},
		{
			name: "uint8 out of range",
			req: &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{
				input("A", "UINT8", []int64{1}, &inference.InferTensorContents{UintContents: []uint32{256}})}},
			want: `input "A": uint_contents[0] = 256 is out of range for UINT8`,
		},
		{
			name: "uint16 out of range",
			req: &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{
				input("A", "UINT16", []int64{1}, &inference.InferTensorContents{UintContents: []uint32{70000}})}},
			want: `input "A": uint_contents[0] = 70000 is out of range for UINT16`,
		},
		{
			name: "raw count",
			req: &inference.ModelInferRequest{
				Inputs: []*inference.ModelInferRequest_InferInputTensor{
					input("A", "INT32", []int64{1}, nil), input("B", "INT32", []int64{1}, nil)},
				RawInputContents: [][]byte{le32(1)},
			},
			want: `raw_input_contents has 1 entries for 2 inputs; it needs exactly one per input, in the order of inputs`,
		},
		{
			name: "raw and contents",
			req: &inference.ModelInferRequest{
				Inputs: []*inference.ModelInferRequest_InferInputTensor{
					input("A", "INT32", []int64{1}, nil), input("B", "INT32", []int64{1}, ints(1))},
				RawInputContents: [][]byte{le32(1), le32(2)},
			},
			want: `input "B": contents.int_contents is set although the request uses raw_input_contents; send each input one way only`,
		},
		{
			name: "raw size",
			req: &inference.ModelInferRequest{
				Inputs:           []*inference.ModelInferRequest_InferInputTensor{input("A", "FP32", []int64{1, 4}, nil)},
				RawInputContents: [][]byte{make([]byte, 15)},
			},
			want: `input "A": shape [1,4] of FP32 needs 16 bytes, raw_input_contents[0] has 15`,
		},
		{
			name: "raw BYTES truncated prefix",
			req: &inference.ModelInferRequest{
				Inputs:           []*inference.ModelInferRequest_InferInputTensor{input("S", "BYTES", []int64{2}, nil)},
				RawInputContents: [][]byte{append(append(le32(1), 'x'), 0, 0)},
			},
			want: `input "S": raw_input_contents[0]: BYTES element 1: missing 4-byte length prefix (2 bytes left)`,
		},
		{
			name: "raw BYTES length too long",
			req: &inference.ModelInferRequest{
				Inputs:           []*inference.ModelInferRequest_InferInputTensor{input("S", "BYTES", []int64{1}, nil)},
				RawInputContents: [][]byte{append(le32(9), "abc"...)},
			},
			want: `input "S": raw_input_contents[0]: BYTES element 0: length 9 exceeds the 3 bytes left`,
		},
		{
			name: "raw BYTES trailing",
			req: &inference.ModelInferRequest{
				Inputs:           []*inference.ModelInferRequest_InferInputTensor{input("S", "BYTES", []int64{1}, nil)},
				RawInputContents: [][]byte{append(le32(1), "ab"...)},
			},
			want: `input "S": raw_input_contents[0]: 1 bytes after the 1 BYTES elements of the shape`,
		},
		{
			name: "negative dimension",
			req:  &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{input("A", "INT32", []int64{-1, 2}, ints(2))}},
			want: `input "A": shape [-1 2]: dimension 0 is negative`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeInputs(tt.req, guard.Limits{}, nil)
			if err == nil {
				t.Fatal("decodeInputs succeeded")
			}
			if !errors.Is(err, tensor.ErrInvalid) {
				t.Errorf("error %v does not wrap tensor.ErrInvalid", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q\n        want %q", err, tt.want)
			}
		})
	}
}

func TestDecodeInputsAccepts(t *testing.T) {
	tests := []struct {
		name string
		req  *inference.ModelInferRequest
		want []tensor.Tensor
	}{
		{
			name: "empty contents message beside raw",
			req: &inference.ModelInferRequest{
				Inputs:           []*inference.ModelInferRequest_InferInputTensor{input("A", "INT32", []int64{1}, &inference.InferTensorContents{})},
				RawInputContents: [][]byte{le32(7)},
			},
			want: []tensor.Tensor{{Name: "A", DataType: tensor.Int32, Shape: []int64{1}, Data: le32(7)}},
		},
		{
			name: "zero elements without data",
			req:  &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{input("A", "FP32", []int64{0, 3}, nil)}},
			want: []tensor.Tensor{{Name: "A", DataType: tensor.FP32, Shape: []int64{0, 3}, Data: []byte{}}},
		},
		{
			name: "two raw inputs in order",
			req: &inference.ModelInferRequest{
				Inputs: []*inference.ModelInferRequest_InferInputTensor{
					input("A", "UINT8", []int64{2}, nil), input("B", "BYTES", []int64{1}, nil)},
				RawInputContents: [][]byte{{4, 5}, append(le32(2), "hi"...)},
			},
			want: []tensor.Tensor{
				{Name: "A", DataType: tensor.Uint8, Shape: []int64{2}, Data: []byte{4, 5}},
				{Name: "B", DataType: tensor.Bytes, Shape: []int64{1}, Data: append(le32(2), "hi"...)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeInputs(tt.req, guard.Limits{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d tensors, want %d", len(got), len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Name != w.Name || g.DataType != w.DataType || formatShape(g.Shape) != formatShape(w.Shape) || !bytes.Equal(g.Data, w.Data) {
					t.Errorf("tensor %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

// TestDecodeTypedInputsShareABlock decodes typed inputs whose data share one
// allocation (contentsArena): each holds its own values, false booleans
// included, and none can grow into the next.
func TestDecodeTypedInputsShareABlock(t *testing.T) {
	req := &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{
		input("A", "BOOL", []int64{3}, &inference.InferTensorContents{BoolContents: []bool{true, false, true}}),
		input("B", "BYTES", []int64{1}, &inference.InferTensorContents{BytesContents: [][]byte{[]byte("hi")}}),
		input("C", "INT32", []int64{2}, &inference.InferTensorContents{IntContents: []int32{7, -1}}),
		input("D", "UINT8", []int64{1}, &inference.InferTensorContents{UintContents: []uint32{255}}),
	}}
	got, err := decodeInputs(req, guard.Limits{}, make([]tensor.Tensor, 4))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{{1, 0, 1}, append(le32(2), "hi"...), le32(7, math.MaxUint32), {255}}
	for i, w := range want {
		if !bytes.Equal(got[i].Data, w) {
			t.Errorf("input %s: data %v, want %v", got[i].Name, got[i].Data, w)
		}
	}
	_ = append(got[0].Data, 9, 9, 9, 9)
	if !bytes.Equal(got[2].Data, want[2]) {
		t.Errorf("appending to input A changed input C: %v", got[2].Data)
	}
}

// fuzzLimits are small enough for the fuzzer to reach every limit.
var fuzzLimits = guard.Limits{MaxTensorElements: 1 << 12, MaxInputs: 4, MaxBytesElement: 32}

// FuzzDecodeRaw feeds arbitrary datatypes, shapes and raw bytes to the raw
// decoder. Whatever it accepts must be a valid tensor aliasing the raw
// bytes, and must decode identically from the equivalent typed contents.
func FuzzDecodeRaw(f *testing.F) {
	f.Add("INT32", []byte{1, 2}, le32(1, 2))
	f.Add("BYTES", []byte{2}, append(append(le32(1), 'a'), le32(0)...))
	f.Add("BYTES", []byte{1}, le32(1<<31))
	f.Add("FP16", []byte{3}, le16(0x3e00, 0x7e00, 0x0001))
	f.Fuzz(func(t *testing.T, dtName string, dims []byte, raw []byte) {
		shape := make([]int64, len(dims))
		for i, d := range dims {
			shape[i] = int64(int8(d))
		}
		dt, ok := tensor.ParseDataType(dtName)
		if !ok {
			return
		}
		got, err := decodeRaw("x", dt, shape, raw, 0, fuzzLimits)
		if err != nil {
			if !errors.Is(err, tensor.ErrInvalid) && !errors.Is(err, transport.ErrLimit) {
				t.Fatalf("error %v wraps neither tensor.ErrInvalid nor transport.ErrLimit", err)
			}
			if !strings.Contains(err.Error(), `input "x"`) {
				t.Fatalf("error %q does not name the input", err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("accepted tensor is invalid: %v", err)
		}
		if err := fuzzLimits.CheckTensor(got); err != nil {
			t.Fatalf("accepted a tensor over a limit: %v", err)
		}
		if len(raw) > 0 && &got.Data[0] != &raw[0] {
			t.Fatal("raw input was copied")
		}
		n, _ := tensor.ElementCount(shape)
		c, exact := typedContents(dt, raw, n)
		if !exact {
			return
		}
		typed, err := decodeContents("x", dt, shape, c, fuzzLimits, new([]byte))
		if err != nil {
			t.Fatalf("typed contents of an accepted raw tensor rejected: %v", err)
		}
		if !bytes.Equal(typed.Data, got.Data) {
			t.Fatalf("typed decoding %x differs from raw %x", typed.Data, got.Data)
		}
	})
}

// typedContents converts valid raw data into the typed contents a client
// would send for it. exact is false where the typed form cannot carry the
// same bytes (a BOOL byte other than 0 or 1, a half-precision NaN payload).
func typedContents(dt tensor.DataType, raw []byte, n int64) (c *inference.InferTensorContents, exact bool) {
	c = &inference.InferTensorContents{}
	le := binary.LittleEndian
	size := int64(dt.Size())
	for i := int64(0); i < n && dt != tensor.Bytes; i++ {
		b := raw[i*size : (i+1)*size]
		switch dt {
		case tensor.Bool:
			if b[0] > 1 {
				return nil, false
			}
			c.BoolContents = append(c.BoolContents, b[0] == 1)
		case tensor.Int8:
			c.IntContents = append(c.IntContents, int32(int8(b[0])))
		case tensor.Int16:
			c.IntContents = append(c.IntContents, int32(int16(le.Uint16(b))))
		case tensor.Int32:
			c.IntContents = append(c.IntContents, int32(le.Uint32(b)))
		case tensor.Int64:
			c.Int64Contents = append(c.Int64Contents, int64(le.Uint64(b)))
		case tensor.Uint8:
			c.UintContents = append(c.UintContents, uint32(b[0]))
		case tensor.Uint16:
			c.UintContents = append(c.UintContents, uint32(le.Uint16(b)))
		case tensor.Uint32:
			c.UintContents = append(c.UintContents, le.Uint32(b))
		case tensor.Uint64:
			c.Uint64Contents = append(c.Uint64Contents, le.Uint64(b))
		case tensor.FP16:
			f := tensor.FP16ToFloat32(le.Uint16(b))
			if f != f {
				return nil, false
			}
			c.Fp32Contents = append(c.Fp32Contents, f)
		case tensor.BF16:
			f := tensor.BF16ToFloat32(le.Uint16(b))
			if f != f {
				return nil, false
			}
			c.Fp32Contents = append(c.Fp32Contents, f)
		case tensor.FP32:
			c.Fp32Contents = append(c.Fp32Contents, math.Float32frombits(le.Uint32(b)))
		case tensor.FP64:
			c.Fp64Contents = append(c.Fp64Contents, math.Float64frombits(le.Uint64(b)))
		}
	}
	if dt == tensor.Bytes {
		elems, err := tensor.BytesElements(raw, n)
		if err != nil {
			return nil, false
		}
		c.BytesContents = elems
	}
	return c, true
}
