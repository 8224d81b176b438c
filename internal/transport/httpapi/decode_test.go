package httpapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// le builds little-endian tensor data from values of the given width.
func le(bits int, vals ...uint64) []byte {
	var b []byte
	for _, v := range vals {
		switch bits {
		case 8:
			b = append(b, byte(v))
		case 16:
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		case 32:
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		default:
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

func f32s(vals ...float32) []byte {
	var b []byte
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func bytesData(elems ...string) []byte {
	var b []byte
	for _, e := range elems {
		b = tensor.AppendBytesElement(b, []byte(e))
	}
	return b
}

func neg(v int64) uint64 { return uint64(v) }

// TestDecodeRoundTrip decodes one input of every datatype, checks the tensor
// bytes, and encodes them back to the canonical JSON data array.
func TestDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		dt   string
		in   string // the data array as sent
		want []byte
		out  string // the data array as encoded back
	}{
		{"BOOL", "[true,false,true]", []byte{1, 0, 1}, ""},
		{"UINT8", "[0,7,255]", le(8, 0, 7, 255), ""},
		{"UINT16", "[0,7,65535]", le(16, 0, 7, 65535), ""},
		{"UINT32", "[0,7,4294967295]", le(32, 0, 7, 4294967295), ""},
		{"UINT64", "[0,7,18446744073709551615]", le(64, 0, 7, math.MaxUint64), ""},
		{"INT8", "[-128,-0,127]", le(8, neg(-128), 0, 127), "[-128,0,127]"},
		{"INT16", "[-32768,1,32767]", le(16, neg(-32768), 1, 32767), ""},
		{"INT32", "[-2147483648,1,2147483647]", le(32, neg(-2147483648), 1, 2147483647), ""},
		{"INT64", "[-9223372036854775808,1,9223372036854775807]", le(64, neg(math.MinInt64), 1, math.MaxInt64), ""},
		{"FP16", "[1.5,-0.25,65504]", le(16, 0x3e00, 0xb400, 0x7bff), ""},
		{"BF16", "[1.5,-2,3.140625]", le(16, 0x3fc0, 0xc000, 0x4049), ""},
		{"FP32", "[0.1,-1e-7,3.4028235e38]", f32s(0.1, -1e-7, math.MaxFloat32), "[0.1,-1e-07,3.4028235e+38]"},
		{"FP64", "[0.1,1E300,-2.5]", le(64, math.Float64bits(0.1), math.Float64bits(1e300), math.Float64bits(-2.5)), "[0.1,1e+300,-2.5]"},
		{"BYTES", `["hello","","h\u00e9\"\\\/"]`, bytesData("hello", "", "hé\"\\/"), `["hello","","hé\"\\/"]`},
	}
	for _, tt := range tests {
		t.Run(tt.dt, func(t *testing.T) {
			body := `{"inputs":[{"name":"x","shape":[3],"datatype":"` + tt.dt + `","data":` + tt.in + `}]}`
			req, err := decodeInferRequest([]byte(body), -1, "", guard.Limits{})
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(req.Inputs) != 1 {
				t.Fatalf("got %d inputs, want 1", len(req.Inputs))
			}
			got := req.Inputs[0]
			if got.Name != "x" || got.DataType.String() != tt.dt || !slices.Equal(got.Shape, []int64{3}) {
				t.Fatalf("got %q %s %v, want \"x\" %s [3]", got.Name, got.DataType, got.Shape, tt.dt)
			}
			if !bytes.Equal(got.Data, tt.want) {
				t.Fatalf("data = %x, want %x", got.Data, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			want := tt.out
			if want == "" {
				want = tt.in
			}
			if enc := string(appendData(nil, got)); enc != want {
				t.Fatalf("encoded %s, want %s", enc, want)
			}
		})
	}
}

func TestDecodeNestedData(t *testing.T) {
	flat := `{"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32","data":[1,2,3,4,5,6]}]}`
	tests := map[string]string{
		"nested":             `{"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32","data":[[1,2,3],[4,5,6]]}]}`,
		"deeply nested":      `{"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32","data":[[[1],[2],[3]],[[4],[5],[6]]]}]}`,
		"data before fields": `{"inputs":[{"data":[[1,2,3],[4,5,6]],"datatype":"INT32","shape":[2,3],"name":"x"}]}`,
		"data before name":   `{"inputs":[{"datatype":"INT32","data":[1,2,3,4,5,6],"shape":[2,3],"name":"x"}]}`,
		"whitespace":         " {\n\t\"inputs\" : [ { \"name\" : \"x\" , \"shape\" : [ 2 , 3 ] , \"datatype\" : \"INT32\" , \"data\" : [ [ 1 , 2 , 3 ] , [ 4 , 5 , 6 ] ] } ] }\r\n",
	}
	ref, err := decodeInferRequest([]byte(flat), -1, "", guard.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := decodeInferRequest([]byte(body), -1, "", guard.Limits{})
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !sameTensors(got.Inputs, ref.Inputs) {
				t.Fatalf("got %+v, want %+v", got.Inputs, ref.Inputs)
			}
		})
	}
}

func sameTensors(a, b []tensor.Tensor) bool {
	return slices.EqualFunc(a, b, func(x, y tensor.Tensor) bool {
		return x.Name == y.Name && x.DataType == y.DataType && slices.Equal(x.Shape, y.Shape) && bytes.Equal(x.Data, y.Data)
	})
}

func TestDecodeRequestFields(t *testing.T) {
	body := `{
		"id": "req-\u00e9",
		"unknown": {"deep": [1, {"x": null}], "s": "\ud83d\ude00"},
		"parameters": {"timeout": 2500, "routing_key": "user-7", "binary_data_output": true, "priority": 3, "other": {"a": [true]}},
		"inputs": [
			{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"shared_memory_region": "none"}, "data": [1]},
			{"name": "b", "shape": [0], "datatype": "INT64", "data": []}
		],
		"outputs": [
			{"name": "y", "parameters": {"binary_data": false}},
			{"name": "z", "parameters": {"binary_data": true}},
			{"name": "w"}
		]
	}`
	req, err := decodeInferRequest([]byte(body), -1, "", guard.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != "req-é" || req.Timeout != 2500 || req.RoutingKey != "user-7" || !req.BinaryOutput {
		t.Fatalf("got id %q timeout %d key %q binary %v", req.ID, req.Timeout, req.RoutingKey, req.BinaryOutput)
	}
	if names := req.outputNames(); !slices.Equal(names, []string{"y", "z", "w"}) {
		t.Fatalf("outputs %v", names)
	}
	if req.binaryFor(0) || !req.binaryFor(1) || !req.binaryFor(2) || !req.binaryFor(3) {
		t.Fatalf("binary flags %v %v %v %v, want false true true true", req.binaryFor(0), req.binaryFor(1), req.binaryFor(2), req.binaryFor(3))
	}
	if len(req.Inputs) != 2 || req.Inputs[1].Data == nil || len(req.Inputs[1].Data) != 0 {
		t.Fatalf("inputs %+v", req.Inputs)
	}
	for _, in := range req.Inputs {
		if err := in.Validate(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDecodeRoutingKey(t *testing.T) {
	const input = `"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}]`
	tests := []struct {
		name, params, sticky, want string
	}{
		{"none", `{}`, "", ""},
		{"routing_key string", `{"routing_key":"u1"}`, "", "u1"},
		{"routing_key integer", `{"routing_key":-42}`, "", "-42"},
		{"sticky parameter", `{"user":"u2"}`, "user", "u2"},
		{"sticky wins after", `{"user":"u2","routing_key":"u1"}`, "user", "u2"},
		{"sticky wins before", `{"routing_key":"u1","user":7}`, "user", "7"},
		{"other parameter ignored", `{"user":"u2"}`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := decodeInferRequest([]byte(`{"parameters":`+tt.params+`,`+input+`}`), -1, tt.sticky, guard.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if req.RoutingKey != tt.want {
				t.Fatalf("routing key %q, want %q", req.RoutingKey, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	in := func(fields string) string { return `{"inputs":[{` + fields + `}]}` }
	tests := []struct {
		name string
		body string
		want string // substring of the message
	}{
		{"empty body", ``, "malformed JSON"},
		{"not an object", `[]`, "must be a JSON object"},
		{"truncated", `{"inputs":[{"name":"x"`, "malformed JSON"},
		{"trailing data", `{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1]}]} x`, "after the top-level value"},
		{"trailing NUL", "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT8\",\"data\":[1]}]}\x00", "after the top-level value"},
		{"trailing comma", `{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1],}]}`, "malformed JSON"},
		{"bad literal", `{"id":"a","x":tru,"inputs":[]}`, "malformed JSON"},
		{"bad escape", `{"id":"\q"}`, "bad escape"},
		{"control char", "{\"id\":\"a\x01\"}", "control character"},
		{"leading zero", `{"x":01}`, "malformed JSON"},
		{"bad unknown field", `{"x":[1,2,}`, "malformed JSON"},
		{"too deep", `{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, "nested deeper"},
		{"no inputs", `{"inputs":[]}`, "no inputs"},
		{"inputs not array", `{"inputs":{}}`, `"inputs": must be an array`},
		{"id not string", `{"id":5}`, `"id": must be a string`},
		{"missing name", in(`"shape":[1],"datatype":"INT8","data":[1]`), `input #0: missing "name"`},
		{"missing datatype", in(`"name":"x","shape":[1],"data":[1]`), `input "x": missing "datatype"`},
		{"missing shape", in(`"name":"x","datatype":"INT8","data":[1]`), `input "x": missing "shape"`},
		{"missing data", in(`"name":"x","shape":[1],"datatype":"INT8"`), `input "x": has neither "data" nor a binary_data_size`},
		{"unknown datatype", in(`"name":"x","shape":[1],"datatype":"FP8","data":[1]`), `input "x": unknown datatype "FP8"`},
		{"negative dim", in(`"name":"x","shape":[-1],"datatype":"INT8","data":[1]`), `input "x": "shape" must be an array of non-negative integers`},
		{"fractional dim", in(`"name":"x","shape":[1.5],"datatype":"INT8","data":[1]`), `"shape" must be an array`},
		{"too few", in(`"name":"x","shape":[1,16],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]`), `input "x": shape [1,16] needs 16 elements, got 15`},
		{"too many", in(`"name":"x","shape":[2],"datatype":"INT32","data":[1,2,3]`), `input "x": shape [2] needs 2 elements, got 3`},
		{"too many deferred", in(`"data":[1,2,3],"name":"x","shape":[2],"datatype":"INT32"`), `shape [2] needs 2 elements, got 3`},
		{"huge shape", in(`"name":"x","shape":[1099511627776,2],"datatype":"INT8","data":[1]`), "more than"},
		{"int8 high", in(`"name":"x","shape":[2],"datatype":"INT8","data":[1,128]`), `input "x": element 1: 128 is out of range for INT8`},
		{"int8 low", in(`"name":"x","shape":[1],"datatype":"INT8","data":[-129]`), "-129 is out of range for INT8"},
		{"uint8 negative", in(`"name":"x","shape":[1],"datatype":"UINT8","data":[-1]`), "-1 is out of range for UINT8"},
		{"uint16 high", in(`"name":"x","shape":[1],"datatype":"UINT16","data":[65536]`), "65536 is out of range for UINT16"},
		{"int32 high", in(`"name":"x","shape":[1],"datatype":"INT32","data":[2147483648]`), "out of range for INT32"},
		{"uint32 high", in(`"name":"x","shape":[1],"datatype":"UINT32","data":[4294967296]`), "out of range for UINT32"},
		{"int64 high", in(`"name":"x","shape":[1],"datatype":"INT64","data":[9223372036854775808]`), "out of range for INT64"},
		{"uint64 overflow", in(`"name":"x","shape":[1],"datatype":"UINT64","data":[18446744073709551616]`), "out of range for UINT64"},
		{"int fraction", in(`"name":"x","shape":[2],"datatype":"INT32","data":[1,2.5]`), `element 1: 2.5 is not an integer (INT32)`},
		{"int exponent", in(`"name":"x","shape":[1],"datatype":"INT64","data":[1e3]`), "1e3 is not an integer"},
		{"int string", in(`"name":"x","shape":[1],"datatype":"INT32","data":["1"]`), "element 0: expected a number"},
		{"int null", in(`"name":"x","shape":[1],"datatype":"INT32","data":[null]`), "element 0: expected a number"},
		{"float bool", in(`"name":"x","shape":[1],"datatype":"FP32","data":[true]`), "element 0: expected a number"},
		{"float NaN", in(`"name":"x","shape":[1],"datatype":"FP32","data":[NaN]`), "element 0: expected a number"},
		{"fp32 overflow", in(`"name":"x","shape":[1],"datatype":"FP32","data":[1e39]`), "1e39 is out of range for FP32"},
		{"fp64 overflow", in(`"name":"x","shape":[1],"datatype":"FP64","data":[1e309]`), "out of range for FP64"},
		{"fp16 overflow", in(`"name":"x","shape":[1],"datatype":"FP16","data":[70000]`), "70000 is out of range for FP16"},
		{"bf16 overflow", in(`"name":"x","shape":[1],"datatype":"BF16","data":[3.4028235e38]`), "out of range for BF16"},
		{"bad number", in(`"name":"x","shape":[1],"datatype":"FP32","data":[1.]`), "malformed number"},
		{"bool number", in(`"name":"x","shape":[1],"datatype":"BOOL","data":[1]`), "expected true or false"},
		{"bytes number", in(`"name":"x","shape":[1],"datatype":"BYTES","data":[1]`), "element 0: expected a string"},
		{"data twice", in(`"name":"x","shape":[1],"datatype":"INT8","data":[1],"data":[2]`), `"data" given twice`},
		{"data and binary", in(`"name":"x","shape":[1],"datatype":"INT8","parameters":{"binary_data_size":1},"data":[1]`), `has both "data" and a binary_data_size`},
		{"bad timeout", `{"parameters":{"timeout":"5"}}`, `parameter "timeout"`},
		{"fractional timeout", `{"parameters":{"timeout":1.5}}`, `parameter "timeout"`},
		{"bad routing key", `{"parameters":{"routing_key":true}}`, `parameter "routing_key": must be a string or an integer`},
		{"fractional routing key", `{"parameters":{"routing_key":1.5}}`, `parameter "routing_key"`},
		{"bad binary output", `{"parameters":{"binary_data_output":1}}`, `parameter "binary_data_output"`},
		{"bad output binary", `{"outputs":[{"name":"y","parameters":{"binary_data":"yes"}}]}`, `output "y": parameter "binary_data"`},
		{"classification", `{"outputs":[{"name":"y","parameters":{"classification":3}}]}`, `"classification" is not supported`},
		{"output without name", `{"outputs":[{}]}`, `output #0: missing "name"`},
		{"name not string", in(`"name":5,"shape":[1],"datatype":"INT8","data":[1]`), `input #0: "name" must be a string`},
		{"datatype not string", in(`"name":"x","shape":[1],"datatype":8,"data":[1]`), `input "x": "datatype" must be a string`},
		{"shape not array", in(`"name":"x","shape":1,"datatype":"INT8","data":[1]`), `input "x": "shape" must be an array`},
		{"input not object", `{"inputs":[5]}`, `input #0: must be an object`},
		{"key not string", `{"inputs":[{1:2}]}`, "expected a string key"},
		{"parameters not object", `{"parameters":[]}`, `"parameters": must be an object`},
		{"input parameters not object", in(`"name":"x","parameters":5`), `input "x": "parameters" must be an object`},
		{"outputs not array", `{"outputs":{}}`, `"outputs": must be an array`},
		{"end inside array", `{"inputs":[`, "unexpected end of input"},
		{"binary without header", in(`"name":"x","shape":[1],"datatype":"INT8","parameters":{"binary_data_size":1}`), "no Inference-Header-Content-Length"},
		// The input's position names it before its name is read, not the
		// parameter's position among the parameters.
		{"bad binary size before name", `{"inputs":[{"name":"a","shape":[1],"datatype":"INT8","data":[1]},{"parameters":{"x":1,"y":2,"binary_data_size":-1}}]}`,
			`input #1: parameter "binary_data_size" must be a non-negative integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeInferRequest([]byte(tt.body), -1, "", guard.Limits{})
			if err == nil {
				t.Fatalf("decode succeeded, want an error containing %q", tt.want)
			}
			if !errors.Is(err, tensor.ErrInvalid) {
				t.Fatalf("error %v does not wrap tensor.ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// binaryBody builds a binary-extension body: the JSON header followed by the
// raw sections.
func binaryBody(header string, sections ...[]byte) ([]byte, int) {
	body := []byte(header)
	for _, s := range sections {
		body = append(body, s...)
	}
	return body, len(header)
}

func TestDecodeBinary(t *testing.T) {
	header := `{"inputs":[` +
		`{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},` +
		`{"name":"j","shape":[2],"datatype":"INT16","data":[1,-2]},` +
		`{"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":14}}]}`
	fp := f32s(1.5, -3)
	str := bytesData("hello", "x")
	body, n := binaryBody(header, fp, str)
	req, err := decodeInferRequest(body, n, "", guard.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := []tensor.Tensor{
		{Name: "a", DataType: tensor.FP32, Shape: []int64{2}, Data: fp},
		{Name: "j", DataType: tensor.Int16, Shape: []int64{2}, Data: le(16, 1, neg(-2))},
		{Name: "s", DataType: tensor.Bytes, Shape: []int64{2}, Data: str},
	}
	if !sameTensors(req.Inputs, want) {
		t.Fatalf("got %+v, want %+v", req.Inputs, want)
	}
	// The tensors must own their bytes: scribbling on the body must not
	// change them.
	for i := range body {
		body[i] = 0xff
	}
	if !sameTensors(req.Inputs, want) {
		t.Fatal("decoded tensors alias the request body")
	}
}

func TestDecodeBinaryErrors(t *testing.T) {
	fp := func(n int) string {
		return `{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":` + strconv.Itoa(n) + `}}]}`
	}
	tests := []struct {
		name   string
		header string
		bin    []byte
		hlen   int // -2 = len(header)
		want   string
	}{
		{"size past end", fp(8), make([]byte, 4), -2, "runs past the end of the 4 bytes"},
		{"bytes left over", fp(8), make([]byte, 12), -2, "sum to 8 bytes, but the body has 12"},
		{"size not matching shape", fp(4), make([]byte, 4), -2, `input "a": shape [2] of FP32 needs 8 bytes, binary_data_size is 4`},
		{"header length past body", fp(8), make([]byte, 8), 1000, "exceeds the"},
		{"header cut short", fp(8), make([]byte, 8), 10, "malformed JSON"},
		{"binary bytes without inputs", `{"inputs":[{"name":"a","shape":[1],"datatype":"INT8","data":[1]}]}`, []byte{1}, -2, "sum to 0 bytes, but the body has 1"},
		{"bad BYTES prefix", `{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]}`, []byte{9, 0, 0, 0, 'a', 'b'}, -2, "exceeds"},
		{"BYTES too many elements", `{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":10}}]}`, bytesData("a", "b"), -2, "more than"},
		{"negative size", `{"inputs":[{"name":"a","shape":[1],"datatype":"INT8","parameters":{"binary_data_size":-1}}]}`, nil, -2, "must be a non-negative integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, n := binaryBody(tt.header, tt.bin)
			if tt.hlen != -2 {
				n = tt.hlen
			}
			_, err := decodeInferRequest(body, n, "", guard.Limits{})
			if err == nil || !errors.Is(err, tensor.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want an invalid-tensor error containing %q", err, tt.want)
			}
		})
	}
}

// TestDecodeJSONMatchesBinary checks that the same tensor sent as JSON and
// through the binary extension decodes identically, for every datatype.
func TestDecodeJSONMatchesBinary(t *testing.T) {
	data := map[tensor.DataType]string{
		tensor.Bool: "[true,false]", tensor.Uint8: "[1,200]", tensor.Uint16: "[1,60000]", tensor.Uint32: "[1,4000000000]",
		tensor.Uint64: "[1,18000000000000000000]", tensor.Int8: "[-1,100]", tensor.Int16: "[-1,30000]", tensor.Int32: "[-1,2000000000]",
		tensor.Int64: "[-1,9000000000000000000]", tensor.FP16: "[0.5,-1024]", tensor.FP32: "[0.3,-1e-30]", tensor.FP64: "[0.3,-1e-300]",
		tensor.BF16: "[0.5,-1024]", tensor.Bytes: `["ab",""]`,
	}
	for _, dt := range tensor.AllDataTypes {
		t.Run(dt.String(), func(t *testing.T) {
			js, err := decodeInferRequest([]byte(`{"inputs":[{"name":"x","shape":[2],"datatype":"`+dt.String()+`","data":`+data[dt]+`}]}`), -1, "", guard.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			raw := js.Inputs[0].Data
			header := `{"inputs":[{"name":"x","shape":[2],"datatype":"` + dt.String() + `","parameters":{"binary_data_size":` + strconv.Itoa(len(raw)) + `}}]}`
			body, n := binaryBody(header, raw)
			bin, err := decodeInferRequest(body, n, "", guard.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !sameTensors(js.Inputs, bin.Inputs) {
				t.Fatalf("JSON %+v, binary %+v", js.Inputs, bin.Inputs)
			}
		})
	}
}

func TestEncodeResponse(t *testing.T) {
	nan := math.Float32bits(float32(math.NaN()))
	inf := math.Float32bits(float32(math.Inf(-1)))
	outs := []tensor.Tensor{
		{Name: "f", DataType: tensor.FP32, Shape: []int64{1, 3}, Data: le(32, uint64(math.Float32bits(0.5)), uint64(nan), uint64(inf))},
		{Name: "s", DataType: tensor.Bytes, Shape: []int64{2}, Data: bytesData("a\"\x01\n", "\xff\xfeok")},
		{Name: "b", DataType: tensor.Int32, Shape: []int64{2}, Data: le(32, 7, neg(-7))},
		{Name: "e", DataType: tensor.FP64, Shape: []int64{0}, Data: nil},
	}
	t.Run("json", func(t *testing.T) {
		buf, jsonLen := appendInferResponse(nil, "m", "2", "id-\u00e9", outs, func(int) bool { return false })
		if jsonLen != -1 {
			t.Fatalf("jsonLen = %d, want -1", jsonLen)
		}
		want := `{"model_name":"m","model_version":"2","id":"id-é","outputs":[` +
			`{"name":"f","datatype":"FP32","shape":[1,3],"data":[0.5,null,null]},` +
			`{"name":"s","datatype":"BYTES","shape":[2],"data":["a\"\u0001\n","\ufffd\ufffdok"]},` +
			`{"name":"b","datatype":"INT32","shape":[2],"data":[7,-7]},` +
			`{"name":"e","datatype":"FP64","shape":[0],"data":[]}]}`
		if string(buf) != want {
			t.Fatalf("got  %s\nwant %s", buf, want)
		}
		if !json.Valid(buf) {
			t.Fatal("response is not valid JSON")
		}
	})
	t.Run("binary", func(t *testing.T) {
		prefix := []byte("keep")
		buf, jsonLen := appendInferResponse(prefix, "m", "1", "", outs, func(i int) bool { return i != 2 })
		if !bytes.HasPrefix(buf, prefix) {
			t.Fatal("appendInferResponse dropped the buffer's prefix")
		}
		buf = buf[len(prefix):]
		if jsonLen <= 0 || jsonLen > len(buf) {
			t.Fatalf("jsonLen = %d of %d", jsonLen, len(buf))
		}
		var doc struct {
			ID      *string `json:"id"`
			Outputs []struct {
				Name       string
				Data       json.RawMessage
				Parameters struct {
					BinaryDataSize *int `json:"binary_data_size"`
				}
			}
		}
		if err := json.Unmarshal(buf[:jsonLen], &doc); err != nil {
			t.Fatalf("header %q: %v", buf[:jsonLen], err)
		}
		if doc.ID != nil {
			t.Fatalf("id present without a request id: %q", *doc.ID)
		}
		var raw []byte
		for i, o := range doc.Outputs {
			if i == 2 {
				if o.Parameters.BinaryDataSize != nil || string(o.Data) != "[7,-7]" {
					t.Fatalf("output b: %+v", o)
				}
				continue
			}
			if o.Parameters.BinaryDataSize == nil || *o.Parameters.BinaryDataSize != len(outs[i].Data) || o.Data != nil {
				t.Fatalf("output %s: %+v", o.Name, o)
			}
			raw = append(raw, outs[i].Data...)
		}
		if !bytes.Equal(buf[jsonLen:], raw) {
			t.Fatalf("binary section %x, want %x", buf[jsonLen:], raw)
		}
	})
}

// TestEncodeString checks the string encoder's escapes and its handling of
// invalid UTF-8, and that encoding/json reads back what it meant.
func TestEncodeString(t *testing.T) {
	tests := []struct {
		in, enc, back string
	}{
		{"", `""`, ""},
		{"plain", `"plain"`, "plain"},
		{"q\" b\\ s", `"q\" b\\ s"`, "q\" b\\ s"},
		{"\x00\x1f\x7f\t", "\"\\u0000\\u001f\x7f\\t\"", "\x00\x1f\x7f\t"},
		{"é中😀", `"é中😀"`, "é中😀"},
		{"\xff", `"\ufffd"`, "\ufffd"},
		{"a\xc3", `"a\ufffd"`, "a\ufffd"},
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`, "\ufffd\ufffd\ufffd"},
	}
	for _, tt := range tests {
		t.Run(tt.enc, func(t *testing.T) {
			enc := appendString(nil, tt.in)
			if string(enc) != tt.enc {
				t.Fatalf("encoded %s, want %s", enc, tt.enc)
			}
			if encB := appendString(nil, []byte(tt.in)); !bytes.Equal(encB, enc) {
				t.Fatalf("[]byte encoding %s differs from string encoding %s", encB, enc)
			}
			var got string
			if err := json.Unmarshal(enc, &got); err != nil {
				t.Fatal(err)
			}
			if got != tt.back {
				t.Fatalf("encoding/json reads %q, want %q", got, tt.back)
			}
		})
	}
}
