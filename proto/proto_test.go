package inference

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// requireToolsEnv makes a missing protoc a failure instead of a skip; make
// test sets it after installing protoc.
const requireToolsEnv = "ONNXSERVE_REQUIRE_TOOLS"

var generatedFiles = []string{"inference.pb.go", "inference_grpc.pb.go", "quality.pb.go", "quality_grpc.pb.go"}

func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv(requireToolsEnv) == "1" {
			t.Fatalf("protoc not on PATH and %s=1: install it with apt-get install -y protobuf-compiler", requireToolsEnv)
		}
		t.Skipf("protoc not on PATH (set %s=1 to make this a failure)", requireToolsEnv)
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "bash", "generate.sh", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate.sh %s: %v\n%s", dir, err, out)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, generatedFiles) {
		t.Errorf("generate.sh wrote %v, want %v", got, generatedFiles)
	}

	for _, name := range generatedFiles {
		t.Run(name, func(t *testing.T) {
			fresh, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			committed, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(fresh, committed) {
				t.Errorf("proto/%s is stale: run proto/generate.sh and commit the result (%s)",
					name, firstDifference(committed, fresh))
			}
		})
	}
}

// firstDifference describes the first line where the committed and the
// freshly generated file disagree.
func firstDifference(committed, fresh []byte) string {
	a := strings.Split(string(committed), "\n")
	b := strings.Split(string(fresh), "\n")
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, a[i], b[i])
		}
	}
	return fmt.Sprintf("committed has %d lines, generated %d", len(a), len(b))
}

// Field numbers of the published Open Inference Protocol, written out here
// rather than read from inference.proto, so the wire tests below catch a
// wrong number in it.
const (
	reqModelName    = 1
	reqModelVersion = 2
	reqID           = 3
	reqParameters   = 4
	reqInputs       = 5
	reqOutputs      = 6
	reqRawInputs    = 7

	inName       = 1
	inDatatype   = 2
	inShape      = 3
	inParameters = 4
	inContents   = 5

	reqOutName       = 1
	reqOutParameters = 2

	respModelName    = 1
	respModelVersion = 2
	respID           = 3
	respParameters   = 4
	respOutputs      = 5
	respRawOutputs   = 6

	outName       = 1
	outDatatype   = 2
	outShape      = 3
	outParameters = 4
	outContents   = 5

	contentsBool   = 1
	contentsInt    = 2
	contentsInt64  = 3
	contentsUint   = 4
	contentsUint64 = 5
	contentsFP32   = 6
	contentsFP64   = 7
	contentsBytes  = 8

	paramBool   = 1
	paramInt64  = 2
	paramString = 3
	paramDouble = 4
	paramUint64 = 5

	streamErrorMessage  = 1
	streamInferResponse = 2

	mapKey   = 1
	mapValue = 2
)

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

// appendPacked writes a packed repeated scalar field, the encoding proto3
// writers use by default.
func appendPacked(b []byte, num protowire.Number, elems func([]byte) []byte) []byte {
	return appendBytes(b, num, elems(nil))
}

func packedVarints(vs ...uint64) func([]byte) []byte {
	return func(b []byte) []byte {
		for _, v := range vs {
			b = protowire.AppendVarint(b, v)
		}
		return b
	}
}

// int64s widens signed values the way a varint carries them: negative numbers
// take ten bytes, sign extended.
func int64s(vs ...int64) []uint64 {
	out := make([]uint64, len(vs))
	for i, v := range vs {
		out[i] = uint64(v)
	}
	return out
}

// appendParam writes one map<string, InferParameter> entry.
func appendParam(b []byte, num protowire.Number, key string, value []byte) []byte {
	entry := appendString(nil, mapKey, key)
	entry = appendBytes(entry, mapValue, value)
	return appendBytes(b, num, entry)
}

// assertNoUnknown fails when any field of m, at any depth, was not
// recognised: a hand-encoded field whose number inference.proto does not
// declare lands there.
func assertNoUnknown(t *testing.T, path string, m protoreflect.Message) {
	t.Helper()
	if u := m.GetUnknown(); len(u) > 0 {
		t.Errorf("%s: %d bytes of unknown fields: %x", path, len(u), []byte(u))
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					assertNoUnknown(t, p+"["+k.String()+"]", mv.Message())
					return true
				})
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				for i := range v.List().Len() {
					assertNoUnknown(t, fmt.Sprintf("%s[%d]", p, i), v.List().Get(i).Message())
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			assertNoUnknown(t, p, v.Message())
		}
		return true
	})
}

func assertEqualMessage(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("decoded message differs\ngot:  %s\nwant: %s",
			prototext.Format(got), prototext.Format(want))
	}
}

func TestModelInferRequestDecodesPublishedWireFormat(t *testing.T) {
	int64Param := func(v int64) []byte { return appendVarint(nil, paramInt64, uint64(v)) }
	boolParam := appendVarint(nil, paramBool, 1)
	stringParam := appendString(nil, paramString, "gold")

	tests := []struct {
		name string
		wire []byte
		want *ModelInferRequest
	}{
		{
			name: "raw input contents",
			wire: func() []byte {
				in0 := appendString(nil, inName, "INPUT0")
				in0 = appendString(in0, inDatatype, "FP32")
				in0 = appendPacked(in0, inShape, packedVarints(int64s(2, 3)...))
				in0 = appendParam(in0, inParameters, "binary_data_size", int64Param(24))
				in1 := appendString(nil, inName, "INPUT1")
				in1 = appendString(in1, inDatatype, "INT64")
				in1 = appendPacked(in1, inShape, packedVarints(int64s(-1, 4)...))
				out0 := appendString(nil, reqOutName, "OUTPUT0")
				out0 = appendParam(out0, reqOutParameters, "binary_data", boolParam)

				b := appendString(nil, reqModelName, "simple")
				b = appendString(b, reqModelVersion, "2")
				b = appendString(b, reqID, "req-42")
				b = appendParam(b, reqParameters, "priority", int64Param(-7))
				b = appendParam(b, reqParameters, "tier", stringParam)
				b = appendBytes(b, reqInputs, in0)
				b = appendBytes(b, reqInputs, in1)
				b = appendBytes(b, reqOutputs, out0)
				b = appendBytes(b, reqRawInputs, []byte{1, 2, 3, 4})
				return appendBytes(b, reqRawInputs, []byte{5, 6})
			}(),
			want: &ModelInferRequest{
				ModelName:    "simple",
				ModelVersion: "2",
				Id:           "req-42",
				Parameters: map[string]*InferParameter{
					"priority": {ParameterChoice: &InferParameter_Int64Param{Int64Param: -7}},
					"tier":     {ParameterChoice: &InferParameter_StringParam{StringParam: "gold"}},
				},
				Inputs: []*ModelInferRequest_InferInputTensor{
					{
						Name: "INPUT0", Datatype: "FP32", Shape: []int64{2, 3},
						Parameters: map[string]*InferParameter{
							"binary_data_size": {ParameterChoice: &InferParameter_Int64Param{Int64Param: 24}},
						},
					},
					{Name: "INPUT1", Datatype: "INT64", Shape: []int64{-1, 4}},
				},
				Outputs: []*ModelInferRequest_InferRequestedOutputTensor{
					{
						Name: "OUTPUT0",
						Parameters: map[string]*InferParameter{
							"binary_data": {ParameterChoice: &InferParameter_BoolParam{BoolParam: true}},
						},
					},
				},
				RawInputContents: [][]byte{{1, 2, 3, 4}, {5, 6}},
			},
		},
		{
			name: "typed contents",
			wire: func() []byte {
				contents := appendPacked(nil, contentsFP32, func(b []byte) []byte {
					b = protowire.AppendFixed32(b, math.Float32bits(1.5))
					return protowire.AppendFixed32(b, math.Float32bits(-2))
				})
				in0 := appendString(nil, inName, "INPUT0")
				in0 = appendString(in0, inDatatype, "FP32")
				in0 = appendPacked(in0, inShape, packedVarints(int64s(1, 2)...))
				in0 = appendBytes(in0, inContents, contents)

				b := appendString(nil, reqModelName, "simple")
				return appendBytes(b, reqInputs, in0)
			}(),
			want: &ModelInferRequest{
				ModelName: "simple",
				Inputs: []*ModelInferRequest_InferInputTensor{{
					Name: "INPUT0", Datatype: "FP32", Shape: []int64{1, 2},
					Contents: &InferTensorContents{Fp32Contents: []float32{1.5, -2}},
				}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ModelInferRequest
			if err := proto.Unmarshal(tt.wire, &got); err != nil {
				t.Fatalf("unmarshal hand-encoded request: %v", err)
			}
			assertNoUnknown(t, "ModelInferRequest", got.ProtoReflect())
			assertEqualMessage(t, &got, tt.want)
		})
	}
}

// wireField is one field as read back from an encoded message.
type wireField struct {
	typ   protowire.Type
	value uint64 // varint and fixed values
	bytes []byte // length-delimited values
}

// readFields walks an encoded message with protowire alone and groups its
// fields by number, in wire order.
func readFields(t *testing.T, b []byte) map[protowire.Number][]wireField {
	t.Helper()
	fields := map[protowire.Number][]wireField{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		f := wireField{typ: typ}
		switch typ {
		case protowire.VarintType:
			f.value, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.value = uint64(v)
		case protowire.Fixed64Type:
			f.value, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.bytes, n = protowire.ConsumeBytes(b)
		default:
			t.Fatalf("field %d: unexpected wire type %d", num, typ)
		}
		if n < 0 {
			t.Fatalf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		fields[num] = append(fields[num], f)
	}
	return fields
}

func numbersOf(fields map[protowire.Number][]wireField) []protowire.Number {
	var nums []protowire.Number
	for n := range fields {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums
}

func assertNumbers(t *testing.T, what string, fields map[protowire.Number][]wireField, want ...protowire.Number) {
	t.Helper()
	if got := numbersOf(fields); !slices.Equal(got, want) {
		t.Fatalf("%s carries field numbers %v, want %v", what, got, want)
	}
}

func assertStringField(t *testing.T, what string, fields map[protowire.Number][]wireField, num protowire.Number, want string) {
	t.Helper()
	fs := fields[num]
	if len(fs) != 1 || fs[0].typ != protowire.BytesType || string(fs[0].bytes) != want {
		t.Errorf("%s field %d = %+v, want the string %q", what, num, fs, want)
	}
}

// readPackedVarints decodes a packed repeated varint field.
func readPackedVarints(t *testing.T, f wireField) []uint64 {
	t.Helper()
	var out []uint64
	for b := f.bytes; len(b) > 0; {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			t.Fatalf("packed varints: %v", protowire.ParseError(n))
		}
		out = append(out, v)
		b = b[n:]
	}
	return out
}

// assertBoolParam checks one encoded map<string, InferParameter> entry holding a
// bool_param.
func assertBoolParam(t *testing.T, what string, entry wireField, key string) {
	t.Helper()
	e := readFields(t, entry.bytes)
	assertNumbers(t, what+" map entry", e, mapKey, mapValue)
	assertStringField(t, what+" map entry", e, mapKey, key)
	v := readFields(t, e[mapValue][0].bytes)
	assertNumbers(t, what+" InferParameter", v, paramBool)
	if v[paramBool][0].typ != protowire.VarintType || v[paramBool][0].value != 1 {
		t.Errorf("%s bool_param = %+v, want varint 1", what, v[paramBool][0])
	}
}

func TestModelInferResponseEncodesPublishedWireFormat(t *testing.T) {
	resp := &ModelInferResponse{
		ModelName:    "simple",
		ModelVersion: "3",
		Id:           "req-42",
		Parameters: map[string]*InferParameter{
			"sequence_end": {ParameterChoice: &InferParameter_BoolParam{BoolParam: true}},
		},
		Outputs: []*ModelInferResponse_InferOutputTensor{
			{
				Name: "OUTPUT0", Datatype: "FP64", Shape: []int64{-1, 2},
				Parameters: map[string]*InferParameter{
					"binary_data": {ParameterChoice: &InferParameter_BoolParam{BoolParam: true}},
				},
				Contents: &InferTensorContents{Fp64Contents: []float64{0.25}},
			},
		},
		RawOutputContents: [][]byte{{9, 8, 7}},
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}

	top := readFields(t, b)
	assertNumbers(t, "ModelInferResponse", top,
		respModelName, respModelVersion, respID, respParameters, respOutputs, respRawOutputs)
	assertStringField(t, "ModelInferResponse", top, respModelName, "simple")
	assertStringField(t, "ModelInferResponse", top, respModelVersion, "3")
	assertStringField(t, "ModelInferResponse", top, respID, "req-42")
	assertBoolParam(t, "ModelInferResponse.parameters", top[respParameters][0], "sequence_end")
	if raw := top[respRawOutputs]; len(raw) != 1 || !bytes.Equal(raw[0].bytes, []byte{9, 8, 7}) {
		t.Errorf("raw_output_contents = %+v, want one entry 090807", raw)
	}

	if len(top[respOutputs]) != 1 {
		t.Fatalf("outputs: %d entries, want 1", len(top[respOutputs]))
	}
	out := readFields(t, top[respOutputs][0].bytes)
	assertNumbers(t, "InferOutputTensor", out, outName, outDatatype, outShape, outParameters, outContents)
	assertStringField(t, "InferOutputTensor", out, outName, "OUTPUT0")
	assertStringField(t, "InferOutputTensor", out, outDatatype, "FP64")
	if got, want := readPackedVarints(t, out[outShape][0]), int64s(-1, 2); !slices.Equal(got, want) {
		t.Errorf("InferOutputTensor shape varints = %v, want %v", got, want)
	}
	assertBoolParam(t, "InferOutputTensor.parameters", out[outParameters][0], "binary_data")

	contents := readFields(t, out[outContents][0].bytes)
	assertNumbers(t, "InferTensorContents", contents, contentsFP64)
	packed := contents[contentsFP64][0].bytes
	if v, n := protowire.ConsumeFixed64(packed); n != len(packed) || math.Float64frombits(v) != 0.25 {
		t.Errorf("fp64_contents = %x, want one packed fixed64 0.25", packed)
	}
}

func TestModelStreamInferResponseWireFormat(t *testing.T) {
	wire := appendString(nil, streamErrorMessage, "model busy")
	wire = appendBytes(wire, streamInferResponse, appendString(nil, respModelName, "simple"))

	var got ModelStreamInferResponse
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	assertNoUnknown(t, "ModelStreamInferResponse", got.ProtoReflect())
	assertEqualMessage(t, &got, &ModelStreamInferResponse{
		ErrorMessage:  "model busy",
		InferResponse: &ModelInferResponse{ModelName: "simple"},
	})
}

func TestInferTensorContentsFieldNumbers(t *testing.T) {
	fixed32 := func(vs ...float32) func([]byte) []byte {
		return func(b []byte) []byte {
			for _, v := range vs {
				b = protowire.AppendFixed32(b, math.Float32bits(v))
			}
			return b
		}
	}
	fixed64 := func(vs ...float64) func([]byte) []byte {
		return func(b []byte) []byte {
			for _, v := range vs {
				b = protowire.AppendFixed64(b, math.Float64bits(v))
			}
			return b
		}
	}
	tests := []struct {
		name string
		num  protowire.Number
		wire []byte
		want *InferTensorContents
	}{
		{"bool_contents", contentsBool,
			appendPacked(nil, contentsBool, packedVarints(1, 0, 1)),
			&InferTensorContents{BoolContents: []bool{true, false, true}}},
		{"int_contents", contentsInt,
			appendPacked(nil, contentsInt, packedVarints(int64s(-5, 7)...)),
			&InferTensorContents{IntContents: []int32{-5, 7}}},
		{"int64_contents", contentsInt64,
			appendPacked(nil, contentsInt64, packedVarints(int64s(math.MinInt64, 3)...)),
			&InferTensorContents{Int64Contents: []int64{math.MinInt64, 3}}},
		{"uint_contents", contentsUint,
			appendPacked(nil, contentsUint, packedVarints(math.MaxUint32, 1)),
			&InferTensorContents{UintContents: []uint32{math.MaxUint32, 1}}},
		{"uint64_contents", contentsUint64,
			appendPacked(nil, contentsUint64, packedVarints(math.MaxUint64)),
			&InferTensorContents{Uint64Contents: []uint64{math.MaxUint64}}},
		{"fp32_contents", contentsFP32,
			appendPacked(nil, contentsFP32, fixed32(0.5, -1)),
			&InferTensorContents{Fp32Contents: []float32{0.5, -1}}},
		{"fp64_contents", contentsFP64,
			appendPacked(nil, contentsFP64, fixed64(math.Pi)),
			&InferTensorContents{Fp64Contents: []float64{math.Pi}}},
		{"bytes_contents", contentsBytes,
			appendBytes(appendBytes(nil, contentsBytes, []byte("ab")), contentsBytes, nil),
			&InferTensorContents{BytesContents: [][]byte{[]byte("ab"), {}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got InferTensorContents
			if err := proto.Unmarshal(tt.wire, &got); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			assertNoUnknown(t, "InferTensorContents", got.ProtoReflect())
			assertEqualMessage(t, &got, tt.want)

			b, err := proto.Marshal(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			assertNumbers(t, "encoded InferTensorContents", readFields(t, b), tt.num)
		})
	}
}

func TestInferParameterFieldNumbers(t *testing.T) {
	tests := []struct {
		name string
		num  protowire.Number
		wire []byte
		want *InferParameter
	}{
		{"bool_param", paramBool, appendVarint(nil, paramBool, 1),
			&InferParameter{ParameterChoice: &InferParameter_BoolParam{BoolParam: true}}},
		{"int64_param", paramInt64, appendVarint(nil, paramInt64, uint64(math.MaxInt64)),
			&InferParameter{ParameterChoice: &InferParameter_Int64Param{Int64Param: math.MaxInt64}}},
		{"string_param", paramString, appendString(nil, paramString, "on"),
			&InferParameter{ParameterChoice: &InferParameter_StringParam{StringParam: "on"}}},
		{"double_param", paramDouble, appendFixed64(nil, paramDouble, math.Float64bits(0.75)),
			&InferParameter{ParameterChoice: &InferParameter_DoubleParam{DoubleParam: 0.75}}},
		{"uint64_param", paramUint64, appendVarint(nil, paramUint64, math.MaxUint64),
			&InferParameter{ParameterChoice: &InferParameter_Uint64Param{Uint64Param: math.MaxUint64}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got InferParameter
			if err := proto.Unmarshal(tt.wire, &got); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			assertNoUnknown(t, "InferParameter", got.ProtoReflect())
			assertEqualMessage(t, &got, tt.want)

			b, err := proto.Marshal(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			assertNumbers(t, "encoded InferParameter", readFields(t, b), tt.num)
		})
	}
}

// field is one expected field of the published schema: its number and type,
// written as fieldType spells it.
type field struct {
	num protowire.Number
	typ string
}

// publishedSchema is every message of the protocol subset onnxserve serves,
// with every field's name, number and type, taken from the published proto.
var publishedSchema = map[protoreflect.FullName]map[protoreflect.Name]field{
	"inference.ServerLiveRequest":  {},
	"inference.ServerLiveResponse": {"live": {1, "bool"}},
	"inference.ServerReadyRequest": {},
	"inference.ServerReadyResponse": {
		"ready": {1, "bool"},
	},
	"inference.ModelReadyRequest": {
		"name": {1, "string"}, "version": {2, "string"},
	},
	"inference.ModelReadyResponse":    {"ready": {1, "bool"}},
	"inference.ServerMetadataRequest": {},
	"inference.ServerMetadataResponse": {
		"name": {1, "string"}, "version": {2, "string"}, "extensions": {3, "repeated string"},
	},
	"inference.ModelMetadataRequest": {
		"name": {1, "string"}, "version": {2, "string"},
	},
	"inference.ModelMetadataResponse": {
		"name": {1, "string"}, "versions": {2, "repeated string"}, "platform": {3, "string"},
		"inputs": {4, "repeated TensorMetadata"}, "outputs": {5, "repeated TensorMetadata"},
	},
	"inference.ModelMetadataResponse.TensorMetadata": {
		"name": {1, "string"}, "datatype": {2, "string"}, "shape": {3, "repeated int64"},
	},
	"inference.InferParameter": {
		"bool_param":   {1, "oneof parameter_choice bool"},
		"int64_param":  {2, "oneof parameter_choice int64"},
		"string_param": {3, "oneof parameter_choice string"},
		"double_param": {4, "oneof parameter_choice double"},
		"uint64_param": {5, "oneof parameter_choice uint64"},
	},
	"inference.InferTensorContents": {
		"bool_contents": {1, "repeated bool"}, "int_contents": {2, "repeated int32"},
		"int64_contents": {3, "repeated int64"}, "uint_contents": {4, "repeated uint32"},
		"uint64_contents": {5, "repeated uint64"}, "fp32_contents": {6, "repeated float"},
		"fp64_contents": {7, "repeated double"}, "bytes_contents": {8, "repeated bytes"},
	},
	"inference.ModelInferRequest": {
		"model_name": {1, "string"}, "model_version": {2, "string"}, "id": {3, "string"},
		"parameters": {4, "map<string,InferParameter>"}, "inputs": {5, "repeated InferInputTensor"},
		"outputs": {6, "repeated InferRequestedOutputTensor"}, "raw_input_contents": {7, "repeated bytes"},
	},
	"inference.ModelInferRequest.InferInputTensor": {
		"name": {1, "string"}, "datatype": {2, "string"}, "shape": {3, "repeated int64"},
		"parameters": {4, "map<string,InferParameter>"}, "contents": {5, "InferTensorContents"},
	},
	"inference.ModelInferRequest.InferRequestedOutputTensor": {
		"name": {1, "string"}, "parameters": {2, "map<string,InferParameter>"},
	},
	"inference.ModelInferResponse": {
		"model_name": {1, "string"}, "model_version": {2, "string"}, "id": {3, "string"},
		"parameters": {4, "map<string,InferParameter>"}, "outputs": {5, "repeated InferOutputTensor"},
		"raw_output_contents": {6, "repeated bytes"},
	},
	"inference.ModelInferResponse.InferOutputTensor": {
		"name": {1, "string"}, "datatype": {2, "string"}, "shape": {3, "repeated int64"},
		"parameters": {4, "map<string,InferParameter>"}, "contents": {5, "InferTensorContents"},
	},
	"inference.ModelStreamInferResponse": {
		"error_message": {1, "string"}, "infer_response": {2, "ModelInferResponse"},
	},
	"inference.ModelStatisticsRequest": {
		"name": {1, "string"}, "version": {2, "string"},
	},
	"inference.StatisticDuration": {
		"count": {1, "uint64"}, "ns": {2, "uint64"},
	},
	"inference.InferStatistics": {
		"success": {1, "StatisticDuration"}, "fail": {2, "StatisticDuration"},
		"queue": {3, "StatisticDuration"}, "compute_input": {4, "StatisticDuration"},
		"compute_infer": {5, "StatisticDuration"}, "compute_output": {6, "StatisticDuration"},
		"cache_hit": {7, "StatisticDuration"}, "cache_miss": {8, "StatisticDuration"},
	},
	"inference.InferResponseStatistics": {
		"compute_infer": {1, "StatisticDuration"}, "compute_output": {2, "StatisticDuration"},
		"success": {3, "StatisticDuration"}, "fail": {4, "StatisticDuration"},
		"empty_response": {5, "StatisticDuration"}, "cancel": {6, "StatisticDuration"},
	},
	"inference.InferBatchStatistics": {
		"batch_size": {1, "uint64"}, "compute_input": {2, "StatisticDuration"},
		"compute_infer": {3, "StatisticDuration"}, "compute_output": {4, "StatisticDuration"},
	},
	"inference.MemoryUsage": {
		"type": {1, "string"}, "id": {2, "int64"}, "byte_size": {3, "uint64"},
	},
	"inference.ModelStatistics": {
		"name": {1, "string"}, "version": {2, "string"}, "last_inference": {3, "uint64"},
		"inference_count": {4, "uint64"}, "execution_count": {5, "uint64"},
		"inference_stats": {6, "InferStatistics"}, "batch_stats": {7, "repeated InferBatchStatistics"},
		"memory_usage":   {8, "repeated MemoryUsage"},
		"response_stats": {9, "map<string,InferResponseStatistics>"},
	},
	"inference.ModelStatisticsResponse": {
		"model_stats": {1, "repeated ModelStatistics"},
	},
	"inference.ModelRepositoryParameter": {
		"bool_param":   {1, "oneof parameter_choice bool"},
		"int64_param":  {2, "oneof parameter_choice int64"},
		"string_param": {3, "oneof parameter_choice string"},
		"bytes_param":  {4, "oneof parameter_choice bytes"},
	},
	"inference.RepositoryIndexRequest": {
		"repository_name": {1, "string"}, "ready": {2, "bool"},
	},
	"inference.RepositoryIndexResponse": {
		"models": {1, "repeated ModelIndex"},
	},
	"inference.RepositoryIndexResponse.ModelIndex": {
		"name": {1, "string"}, "version": {2, "string"}, "state": {3, "string"}, "reason": {4, "string"},
	},
	"inference.RepositoryModelLoadRequest": {
		"repository_name": {1, "string"}, "model_name": {2, "string"},
		"parameters": {3, "map<string,ModelRepositoryParameter>"},
	},
	"inference.RepositoryModelLoadResponse": {},
	"inference.RepositoryModelUnloadRequest": {
		"repository_name": {1, "string"}, "model_name": {2, "string"},
		"parameters": {3, "map<string,ModelRepositoryParameter>"},
	},
	"inference.RepositoryModelUnloadResponse": {},
}

// fieldType spells a field's type the way publishedSchema does.
func fieldType(fd protoreflect.FieldDescriptor) string {
	if fd.IsMap() {
		return "map<" + fieldType(fd.MapKey()) + "," + fieldType(fd.MapValue()) + ">"
	}
	s := fd.Kind().String()
	if fd.Kind() == protoreflect.MessageKind {
		s = string(fd.Message().Name())
	}
	if fd.IsList() {
		s = "repeated " + s
	}
	if o := fd.ContainingOneof(); o != nil {
		s = "oneof " + string(o.Name()) + " " + s
	}
	return s
}

// collectMessages lists every message declared in msgs, nested ones
// included, leaving out the entry types protoc synthesises for maps.
func collectMessages(msgs protoreflect.MessageDescriptors, into map[protoreflect.FullName]protoreflect.MessageDescriptor) {
	for i := range msgs.Len() {
		md := msgs.Get(i)
		if md.IsMapEntry() {
			continue
		}
		into[md.FullName()] = md
		collectMessages(md.Messages(), into)
	}
}

func TestSchemaMatchesPublishedProtocol(t *testing.T) {
	fd := File_inference_proto
	if fd.Package() != "inference" {
		t.Fatalf("proto package = %q, want inference", fd.Package())
	}
	declared := map[protoreflect.FullName]protoreflect.MessageDescriptor{}
	collectMessages(fd.Messages(), declared)

	for name := range declared {
		if _, ok := publishedSchema[name]; !ok {
			t.Errorf("inference.proto declares %s, which the published protocol subset does not have", name)
		}
	}
	for name, want := range publishedSchema {
		t.Run(string(name), func(t *testing.T) {
			md, ok := declared[name]
			if !ok {
				t.Fatalf("inference.proto lacks message %s", name)
			}
			fields := md.Fields()
			if fields.Len() != len(want) {
				t.Errorf("%d fields, want %d", fields.Len(), len(want))
			}
			for i := range fields.Len() {
				f := fields.Get(i)
				w, ok := want[f.Name()]
				if !ok {
					t.Errorf("unexpected field %s = %d", f.Name(), f.Number())
					continue
				}
				if f.Number() != w.num {
					t.Errorf("field %s has number %d, want %d", f.Name(), f.Number(), w.num)
				}
				if got := fieldType(f); got != w.typ {
					t.Errorf("field %s has type %q, want %q", f.Name(), got, w.typ)
				}
			}
		})
	}
}

func TestServiceMethods(t *testing.T) {
	const service = "inference.GRPCInferenceService"
	tests := []struct {
		fullMethod    string // as clients put it on the wire
		generated     string // the generated constant for it
		input, output protoreflect.Name
		streaming     bool
	}{
		{"/inference.GRPCInferenceService/ServerLive", GRPCInferenceService_ServerLive_FullMethodName,
			"ServerLiveRequest", "ServerLiveResponse", false},
		{"/inference.GRPCInferenceService/ServerReady", GRPCInferenceService_ServerReady_FullMethodName,
			"ServerReadyRequest", "ServerReadyResponse", false},
		{"/inference.GRPCInferenceService/ModelReady", GRPCInferenceService_ModelReady_FullMethodName,
			"ModelReadyRequest", "ModelReadyResponse", false},
		{"/inference.GRPCInferenceService/ServerMetadata", GRPCInferenceService_ServerMetadata_FullMethodName,
			"ServerMetadataRequest", "ServerMetadataResponse", false},
		{"/inference.GRPCInferenceService/ModelMetadata", GRPCInferenceService_ModelMetadata_FullMethodName,
			"ModelMetadataRequest", "ModelMetadataResponse", false},
		{"/inference.GRPCInferenceService/ModelInfer", GRPCInferenceService_ModelInfer_FullMethodName,
			"ModelInferRequest", "ModelInferResponse", false},
		{"/inference.GRPCInferenceService/ModelStreamInfer", GRPCInferenceService_ModelStreamInfer_FullMethodName,
			"ModelInferRequest", "ModelStreamInferResponse", true},
		{"/inference.GRPCInferenceService/ModelStatistics", GRPCInferenceService_ModelStatistics_FullMethodName,
			"ModelStatisticsRequest", "ModelStatisticsResponse", false},
		{"/inference.GRPCInferenceService/RepositoryIndex", GRPCInferenceService_RepositoryIndex_FullMethodName,
			"RepositoryIndexRequest", "RepositoryIndexResponse", false},
		{"/inference.GRPCInferenceService/RepositoryModelLoad", GRPCInferenceService_RepositoryModelLoad_FullMethodName,
			"RepositoryModelLoadRequest", "RepositoryModelLoadResponse", false},
		{"/inference.GRPCInferenceService/RepositoryModelUnload", GRPCInferenceService_RepositoryModelUnload_FullMethodName,
			"RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse", false},
	}

	sd := File_inference_proto.Services().ByName("GRPCInferenceService")
	if sd == nil || sd.FullName() != service {
		t.Fatalf("inference.proto lacks service %s", service)
	}
	if got := sd.Methods().Len(); got != len(tests) {
		t.Errorf("service has %d methods, want %d", got, len(tests))
	}
	desc := GRPCInferenceService_ServiceDesc
	if desc.ServiceName != service {
		t.Errorf("ServiceDesc.ServiceName = %q, want %q", desc.ServiceName, service)
	}

	for _, tt := range tests {
		name := tt.fullMethod[strings.LastIndex(tt.fullMethod, "/")+1:]
		t.Run(name, func(t *testing.T) {
			if tt.generated != tt.fullMethod {
				t.Errorf("generated full method name %q, want %q", tt.generated, tt.fullMethod)
			}
			md := sd.Methods().ByName(protoreflect.Name(name))
			if md == nil {
				t.Fatalf("service lacks method %s", name)
			}
			if got := "/" + string(sd.FullName()) + "/" + string(md.Name()); got != tt.fullMethod {
				t.Errorf("descriptor full method %q, want %q", got, tt.fullMethod)
			}
			if md.Input().Name() != tt.input || md.Output().Name() != tt.output {
				t.Errorf("%s(%s) returns %s, want %s(%s) returns %s",
					name, md.Input().Name(), md.Output().Name(), name, tt.input, tt.output)
			}
			if md.IsStreamingClient() != tt.streaming || md.IsStreamingServer() != tt.streaming {
				t.Errorf("streaming client=%v server=%v, want both %v",
					md.IsStreamingClient(), md.IsStreamingServer(), tt.streaming)
			}
			if tt.streaming {
				i := slices.IndexFunc(desc.Streams, func(s grpc.StreamDesc) bool { return s.StreamName == name })
				if i < 0 || !desc.Streams[i].ClientStreams || !desc.Streams[i].ServerStreams {
					t.Errorf("ServiceDesc lacks bidirectional stream %s: %+v", name, desc.Streams)
				}
			} else if !slices.ContainsFunc(desc.Methods, func(m grpc.MethodDesc) bool { return m.MethodName == name }) {
				t.Errorf("ServiceDesc lacks unary method %s", name)
			}
		})
	}
}
