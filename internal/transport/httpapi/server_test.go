package httpapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// jsonEqual reports whether two JSON documents hold the same value.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("response %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// wantError checks a v2 error response: status, JSON content type, and a
// message containing msg.
func wantError(t *testing.T, r result, code int, msg string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d (body %s)", r.code, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != contentJSON {
		t.Fatalf("Content-Type %q, want %q", ct, contentJSON)
	}
	var doc struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || doc.Error == nil {
		t.Fatalf("body %q is not a v2 error document (%v)", r.body, err)
	}
	if !strings.Contains(*doc.Error, msg) {
		t.Fatalf("error %q does not contain %q", *doc.Error, msg)
	}
}

func TestHealthAndServerMetadata(t *testing.T) {
	e := newEnv(t, Config{Version: "1.2.3"})
	for _, path := range []string{"/v2/health/live", "/v2/health/ready"} {
		if r := e.get(t, path); r.code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, r.code)
		}
	}
	r := e.get(t, "/v2")
	if r.code != http.StatusOK || r.header.Get("Content-Type") != contentJSON {
		t.Fatalf("GET /v2: %d %q", r.code, r.header.Get("Content-Type"))
	}
	jsonEqual(t, r.body, `{"name":"onnxserve","version":"1.2.3","extensions":["binary_tensor_data","model_repository","statistics","parameters"]}`)

	e.serving.SetNotReady()
	if r := e.get(t, "/v2/health/ready"); r.code != http.StatusServiceUnavailable {
		t.Fatalf("ready after SetNotReady: %d, want 503", r.code)
	}
	if r := e.get(t, "/v2/health/live"); r.code != http.StatusOK {
		t.Fatalf("live after SetNotReady: %d, want 200", r.code)
	}
}

func TestModelMetadata(t *testing.T) {
	e := newEnv(t, Config{})
	simple := func(versions string) string {
		return `{"name":"simple","versions":` + versions + `,"platform":"onnxruntime_onnx",
			"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[-1,16]},{"name":"INPUT1","datatype":"INT32","shape":[-1,16]}],
			"outputs":[{"name":"OUTPUT0","datatype":"INT32","shape":[-1,16]},{"name":"OUTPUT1","datatype":"INT32","shape":[-1,16]}]}`
	}
	for _, path := range []string{"/v2/models/simple", "/v2/models/simple/versions/1", "/v2/models/simple/versions/2", "/v2/models/%73imple"} {
		t.Run(path, func(t *testing.T) {
			r := e.get(t, path)
			if r.code != http.StatusOK {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			jsonEqual(t, r.body, simple(`["1","2"]`))
		})
	}
	t.Run("unknown model", func(t *testing.T) {
		wantError(t, e.get(t, "/v2/models/nope"), http.StatusNotFound, `model "nope"`)
	})
	t.Run("unknown version", func(t *testing.T) {
		wantError(t, e.get(t, "/v2/models/simple/versions/7"), http.StatusNotFound, "version")
	})
}

func TestModelReady(t *testing.T) {
	e := newEnv(t, Config{})
	tests := []struct {
		path string
		code int
	}{
		{"/v2/models/simple/ready", http.StatusOK},
		{"/v2/models/simple/versions/1/ready", http.StatusOK},
		{"/v2/models/simple/versions/2/ready", http.StatusOK},
		{"/v2/models/nope/ready", http.StatusNotFound},
		{"/v2/models/simple/versions/9/ready", http.StatusNotFound},
		{"/v2/models/simple/versions/x/ready", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if r := e.get(t, tt.path); r.code != tt.code {
				t.Fatalf("status %d, want %d (%s)", r.code, tt.code, r.body)
			}
		})
	}
	t.Run("unloaded", func(t *testing.T) {
		if r := e.post(t, "/v2/repository/models/fail/unload", ""); r.code != http.StatusOK {
			t.Fatalf("unload: %d %s", r.code, r.body)
		}
		if r := e.get(t, "/v2/models/fail/ready"); r.code != http.StatusServiceUnavailable {
			t.Fatalf("ready of an unloaded model: %d, want 503", r.code)
		}
		wantError(t, e.post(t, "/v2/models/fail/infer", `{"inputs":[{"name":"IN","shape":[1],"datatype":"INT32","data":[1]}]}`),
			http.StatusServiceUnavailable, "not ready")
	})
}

// simpleRequest is an infer request for "simple": INPUT0 = 0..15, INPUT1 = 1.
func simpleRequest(extra string) string {
	in0 := make([]string, 16)
	in1 := make([]string, 16)
	for i := range in0 {
		in0[i], in1[i] = strconv.Itoa(i), "1"
	}
	return `{` + extra + `"inputs":[` +
		`{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[` + strings.Join(in0, ",") + `]},` +
		`{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[[` + strings.Join(in1, ",") + `]]}]}`
}

func TestInferJSON(t *testing.T) {
	e := newEnv(t, Config{})
	sum := `[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]`
	diff := `[-1,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14]`
	tests := []struct {
		name, path, body, want string
	}{
		{"newest version", "/v2/models/simple/infer", simpleRequest(`"id":"abc",`),
			`{"model_name":"simple","model_version":"2","id":"abc","outputs":[` +
				`{"name":"OUTPUT0","datatype":"INT32","shape":[1,16],"data":` + sum + `},` +
				`{"name":"OUTPUT1","datatype":"INT32","shape":[1,16],"data":` + diff + `}]}`},
		{"named version", "/v2/models/simple/versions/1/infer", simpleRequest(`"id":"n",`),
			`{"model_name":"simple","model_version":"1","id":"n","outputs":[` +
				`{"name":"OUTPUT0","datatype":"INT32","shape":[1,16],"data":` + sum + `},` +
				`{"name":"OUTPUT1","datatype":"INT32","shape":[1,16],"data":` + diff + `}]}`},
		{"output subset", "/v2/models/simple/infer", simpleRequest(`"id":"s","outputs":[{"name":"OUTPUT1"}],"parameters":{"timeout":10000000,"routing_key":"u"},`),
			`{"model_name":"simple","model_version":"2","id":"s","outputs":[{"name":"OUTPUT1","datatype":"INT32","shape":[1,16],"data":` + diff + `}]}`},
		{"outputs reordered", "/v2/models/simple/infer", simpleRequest(`"id":"r","outputs":[{"name":"OUTPUT1"},{"name":"OUTPUT0"}],`),
			`{"model_name":"simple","model_version":"2","id":"r","outputs":[` +
				`{"name":"OUTPUT1","datatype":"INT32","shape":[1,16],"data":` + diff + `},` +
				`{"name":"OUTPUT0","datatype":"INT32","shape":[1,16],"data":` + sum + `}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post(t, tt.path, tt.body)
			if r.code != http.StatusOK {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != contentJSON {
				t.Fatalf("Content-Type %q", ct)
			}
			if r.header.Get(headerInferenceLength) != "" {
				t.Fatal("JSON response carries Inference-Header-Content-Length")
			}
			jsonEqual(t, r.body, tt.want)
		})
	}
}

// TestInferDatatypes sends every datatype through an identity model as JSON
// and through the binary extension both ways, and expects the same tensor
// back each time.
func TestInferDatatypes(t *testing.T) {
	e := newEnv(t, Config{})
	data := map[tensor.DataType]string{
		tensor.Bool: "[true,false,true]", tensor.Uint8: "[0,1,255]", tensor.Uint16: "[0,1,65535]",
		tensor.Uint32: "[0,1,4294967295]", tensor.Uint64: "[0,1,18446744073709551615]",
		tensor.Int8: "[-128,0,127]", tensor.Int16: "[-32768,0,32767]", tensor.Int32: "[-2147483648,0,2147483647]",
		tensor.Int64: "[-9223372036854775808,0,9223372036854775807]", tensor.FP16: "[-2.5,0.099975586,65504]",
		tensor.BF16: "[-2.5,0.099609375,3.3895314e+38]", tensor.FP32: "[-2.5,0.1,3.4028235e+38]",
		tensor.FP64: "[-2.5,0.1,1.7976931348623157e+308]", tensor.Bytes: `["a","","\u00e9\"\\\n"]`,
	}
	for _, dt := range tensor.AllDataTypes {
		path := "/v2/models/identity_" + strings.ToLower(dt.String()) + "/infer"
		t.Run(dt.String()+"/json", func(t *testing.T) {
			r := e.post(t, path, `{"id":"c","inputs":[{"name":"IN","shape":[3],"datatype":"`+dt.String()+`","data":`+data[dt]+`}]}`)
			if r.code != http.StatusOK {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			jsonEqual(t, r.body, `{"model_name":"identity_`+strings.ToLower(dt.String())+`","model_version":"1","id":"c","outputs":[{"name":"OUT","datatype":"`+dt.String()+`","shape":[3],"data":`+data[dt]+`}]}`)
		})
		t.Run(dt.String()+"/binary", func(t *testing.T) {
			ref, err := decodeInferRequest([]byte(`{"inputs":[{"name":"IN","shape":[3],"datatype":"`+dt.String()+`","data":`+data[dt]+`}]}`), -1, "", guard.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			raw := ref.Inputs[0].Data
			header := `{"inputs":[{"name":"IN","shape":[3],"datatype":"` + dt.String() + `","parameters":{"binary_data_size":` + strconv.Itoa(len(raw)) + `}}],` +
				`"outputs":[{"name":"OUT","parameters":{"binary_data":true}}]}`
			r := e.do(t, http.MethodPost, path, append([]byte(header), raw...), map[string]string{headerInferenceLength: strconv.Itoa(len(header))})
			if r.code != http.StatusOK {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			out := binaryOutputs(t, r)
			if !bytes.Equal(out["OUT"], raw) {
				t.Fatalf("binary output %x, want %x", out["OUT"], raw)
			}
		})
	}
}

// binaryOutputs splits a binary-extension response into its outputs' raw
// data, checking the headers and the size parameters on the way.
func binaryOutputs(t *testing.T, r result) map[string][]byte {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != contentBinary {
		t.Fatalf("Content-Type %q, want %q", ct, contentBinary)
	}
	n, err := strconv.Atoi(r.header.Get(headerInferenceLength))
	if err != nil || n <= 0 || n > len(r.body) {
		t.Fatalf("Inference-Header-Content-Length %q for a %d-byte body", r.header.Get(headerInferenceLength), len(r.body))
	}
	var doc struct {
		Outputs []struct {
			Name       string
			Data       json.RawMessage
			Parameters struct {
				BinaryDataSize *int `json:"binary_data_size"`
			}
		}
	}
	if err := json.Unmarshal(r.body[:n], &doc); err != nil {
		t.Fatalf("JSON header %q: %v", r.body[:n], err)
	}
	out := map[string][]byte{}
	rest := r.body[n:]
	for _, o := range doc.Outputs {
		if o.Parameters.BinaryDataSize == nil {
			out[o.Name] = o.Data
			continue
		}
		size := *o.Parameters.BinaryDataSize
		if o.Data != nil || size > len(rest) {
			t.Fatalf("output %s: data %s, binary_data_size %d of %d bytes left", o.Name, o.Data, size, len(rest))
		}
		out[o.Name], rest = rest[:size], rest[size:]
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes after the last binary output", len(rest))
	}
	return out
}

func int32Bytes(vals ...int32) []byte {
	var b []byte
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	return b
}

func TestInferBinary(t *testing.T) {
	e := newEnv(t, Config{})
	in0 := make([]int32, 16)
	ones := make([]int32, 16)
	sum := make([]int32, 16)
	for i := range in0 {
		in0[i], ones[i], sum[i] = int32(i), 1, int32(i+1)
	}
	raw0 := int32Bytes(in0...)

	t.Run("mixed inputs, request-level binary output", func(t *testing.T) {
		header := `{"id":"b1","parameters":{"binary_data_output":true},"inputs":[` +
			`{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},` +
			`{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}],` +
			`"outputs":[{"name":"OUTPUT0"},{"name":"OUTPUT1","parameters":{"binary_data":false}}]}`
		r := e.do(t, http.MethodPost, "/v2/models/simple/infer", append([]byte(header), raw0...),
			map[string]string{headerInferenceLength: strconv.Itoa(len(header))})
		if r.code != http.StatusOK {
			t.Fatalf("status %d: %s", r.code, r.body)
		}
		out := binaryOutputs(t, r)
		if !bytes.Equal(out["OUTPUT0"], int32Bytes(sum...)) {
			t.Fatalf("OUTPUT0 %x", out["OUTPUT0"])
		}
		if string(out["OUTPUT1"]) != `[-1,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14]` {
			t.Fatalf("OUTPUT1 %s, want JSON data", out["OUTPUT1"])
		}
	})
	t.Run("binary input, JSON output", func(t *testing.T) {
		header := `{"inputs":[` +
			`{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},` +
			`{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}]}`
		body := append(append([]byte(header), raw0...), int32Bytes(ones...)...)
		r := e.do(t, http.MethodPost, "/v2/models/simple/infer", body, map[string]string{headerInferenceLength: strconv.Itoa(len(header))})
		if r.code != http.StatusOK || r.header.Get("Content-Type") != contentJSON {
			t.Fatalf("status %d %q: %s", r.code, r.header.Get("Content-Type"), r.body)
		}
		if !bytes.Contains(r.body, []byte(`"data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]`)) {
			t.Fatalf("body %s", r.body)
		}
	})
	t.Run("BYTES both ways", func(t *testing.T) {
		raw := bytesData("hello", "", "wörld")
		header := `{"inputs":[{"name":"IN","shape":[3],"datatype":"BYTES","parameters":{"binary_data_size":` + strconv.Itoa(len(raw)) + `}}],` +
			`"parameters":{"binary_data_output":true}}`
		r := e.do(t, http.MethodPost, "/v2/models/identity_bytes/infer", append([]byte(header), raw...),
			map[string]string{headerInferenceLength: strconv.Itoa(len(header))})
		if r.code != http.StatusOK {
			t.Fatalf("status %d: %s", r.code, r.body)
		}
		if out := binaryOutputs(t, r); !bytes.Equal(out["OUT"], raw) {
			t.Fatalf("OUT %q, want %q", out["OUT"], raw)
		}
	})
	t.Run("size mismatch", func(t *testing.T) {
		header := `{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},` +
			`{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}]}`
		r := e.do(t, http.MethodPost, "/v2/models/simple/infer", append([]byte(header), raw0...),
			map[string]string{headerInferenceLength: strconv.Itoa(len(header))})
		wantError(t, r, http.StatusBadRequest, "runs past the end")
	})
}

func TestInferErrors(t *testing.T) {
	e := newEnv(t, Config{})
	simpleIn := func(in0, in1 string) string {
		return `{"inputs":[` + in0 + `,` + in1 + `]}`
	}
	ok1 := `{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}`
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		code                     int
		msg                      string
	}{
		{"malformed JSON", "POST", "/v2/models/simple/infer", `{"inputs":[`, nil, 400, "malformed JSON"},
		{"wrong datatype", "POST", "/v2/models/simple/infer",
			simpleIn(`{"name":"INPUT0","shape":[1,16],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}`, ok1), nil, 400, "datatype FP32 does not match"},
		{"wrong shape", "POST", "/v2/models/simple/infer",
			simpleIn(`{"name":"INPUT0","shape":[2,8],"datatype":"INT32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}`, ok1), nil, 400, "does not match the model's"},
		{"wrong rank", "POST", "/v2/models/simple/infer",
			simpleIn(`{"name":"INPUT0","shape":[16],"datatype":"INT32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}`, ok1), nil, 400, "rank"},
		{"count mismatch", "POST", "/v2/models/simple/infer",
			simpleIn(`{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}`, ok1), nil, 400, `input "INPUT0": shape [1,16] needs 16 elements, got 15`},
		{"out of range", "POST", "/v2/models/simple/infer",
			simpleIn(`{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2147483648]}`, ok1), nil, 400, `input "INPUT0": element 15: 2147483648 is out of range for INT32`},
		{"unknown input", "POST", "/v2/models/simple/infer",
			simpleIn(`{"name":"INPUT9","shape":[1,16],"datatype":"INT32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}`, ok1), nil, 400, `unknown input "INPUT9"`},
		{"missing input", "POST", "/v2/models/simple/infer", `{"inputs":[` + ok1 + `]}`, nil, 400, `missing input "INPUT0"`},
		{"unknown output", "POST", "/v2/models/simple/infer", simpleRequest(`"outputs":[{"name":"OUTPUT7"}],`), nil, 400, `unknown output "OUTPUT7"`},
		{"negative timeout", "POST", "/v2/models/simple/infer", simpleRequest(`"parameters":{"timeout":-5},`), nil, 400, `"timeout"`},
		{"bad header length", "POST", "/v2/models/simple/infer", simpleRequest(""), map[string]string{headerInferenceLength: "x"}, 400, headerInferenceLength},
		{"header length past body", "POST", "/v2/models/simple/infer", simpleRequest(""), map[string]string{headerInferenceLength: "99999"}, 400, "exceeds"},
		{"compressed body", "POST", "/v2/models/simple/infer", simpleRequest(""), map[string]string{"Content-Encoding": "gzip"}, 400, "Content-Encoding"},
		{"unknown model", "POST", "/v2/models/nope/infer", simpleRequest(""), nil, 404, `model "nope"`},
		{"unknown version", "POST", "/v2/models/simple/versions/3/infer", simpleRequest(""), nil, 404, "version"},
		{"non-numeric version", "POST", "/v2/models/simple/versions/abc/infer", simpleRequest(""), nil, 404, "version"},
		{"model error", "POST", "/v2/models/fail/infer", `{"inputs":[{"name":"IN","shape":[1],"datatype":"INT32","data":[1]}]}`, nil, 500, errModelFailed.Error()},
		{"malformed model output", "POST", "/v2/models/badout/infer", `{"inputs":[{"name":"IN","shape":[2],"datatype":"FP32","data":[1,2]}]}`, nil, 500, "malformed output"},
		{"GET infer", "GET", "/v2/models/simple/infer", "", nil, 405, "not allowed"},
		{"POST metadata", "POST", "/v2/models/simple", "", nil, 405, "not allowed"},
		{"PUT health", "PUT", "/v2/health/live", "", nil, 405, "not allowed"},
		{"GET index", "GET", "/v2/repository/index", "", nil, 405, "not allowed"},
		{"unknown path", "GET", "/v2/nothing", "", nil, 404, "no such endpoint"},
		{"unknown model action", "GET", "/v2/models/simple/bogus", "", nil, 404, "no such endpoint"},
		{"not v2", "GET", "/v1/models/simple", "", nil, 404, "no such endpoint"},
		{"trailing slash", "GET", "/v2/models/simple/", "", nil, 404, "no such endpoint"},
		{"empty segment", "GET", "/v2//models/simple", "", nil, 404, "no such endpoint"},
		{"too deep", "GET", "/v2/models/simple/versions/1/infer/more/x", "", nil, 404, "no such endpoint"},
		{"dot-dot name", "GET", "/v2/models/%2e%2e", "", nil, 400, "not a valid name"},
		{"slash in name", "GET", "/v2/models/a%2Fb", "", nil, 400, "path separator"},
		{"bad escape", "GET", "/v2/models/%zz", "", nil, 400, "percent-encoding"},
		{"long name", "GET", "/v2/models/" + strings.Repeat("m", maxNameLen+1), "", nil, 400, "longer than"},
		{"panic", "POST", "/v2/models/panic/infer", `{"inputs":[{"name":"IN","shape":[1],"datatype":"INT32","data":[1]}]}`, nil, 500, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.method, tt.path, []byte(tt.body), tt.header)
			wantError(t, r, tt.code, tt.msg)
			if tt.code == 405 && r.header.Get("Allow") == "" {
				t.Fatal("405 without an Allow header")
			}
		})
	}
	// The server goes on after all of that, the panic included.
	if r := e.post(t, "/v2/models/simple/infer", simpleRequest("")); r.code != http.StatusOK {
		t.Fatalf("after the errors: %d %s", r.code, r.body)
	}
}

func TestOversizedBody(t *testing.T) {
	e := newEnv(t, Config{MaxRequestBodySize: 1024})
	r := e.post(t, "/v2/models/simple/infer", `{"id":"`+strings.Repeat("x", 4096)+`"}`)
	wantError(t, r, http.StatusRequestEntityTooLarge, "exceeds the 1024-byte limit")
	// A client that waits for 100 Continue (curl does for large bodies) is
	// refused the same way.
	r = e.do(t, http.MethodPost, "/v2/models/simple/infer", bytes.Repeat([]byte("x"), 4096), map[string]string{"Expect": "100-continue"})
	wantError(t, r, http.StatusRequestEntityTooLarge, "exceeds the 1024-byte limit")
	// A request under the limit on a new connection still works.
	if r := e.post(t, "/v2/models/simple/infer", simpleRequest("")); r.code != http.StatusOK {
		t.Fatalf("after the oversized request: %d %s", r.code, r.body)
	}
}

// blockRequest is one request for the "block" model, which holds every
// run until the test releases it.
const blockRequest = `{"inputs":[{"name":"IN","shape":[1],"datatype":"INT32","data":[7]}]}`

func waitStarted(t *testing.T, e *env) {
	t.Helper()
	select {
	case <-e.loader.started:
	case <-time.After(testTimeout):
		t.Fatal("the block model never started a run")
	}
}

func TestQueueFull(t *testing.T) {
	e := newEnv(t, Config{})
	// The first request runs and holds the only instance.
	results := make(chan result, 8)
	go func() { results <- e.post(t, "/v2/models/block/infer", blockRequest) }()
	waitStarted(t, e)
	// With one request running and a queue of one, at most one more is
	// admitted; of four more, at least three are refused at once.
	const extra = 4
	for range extra {
		go func() { results <- e.post(t, "/v2/models/block/infer", blockRequest) }()
	}
	var refused []result
	for len(refused) < extra-1 {
		select {
		case r := <-results:
			if r.code != http.StatusTooManyRequests {
				t.Fatalf("a request finished with %d while the model was blocked: %s", r.code, r.body)
			}
			refused = append(refused, r)
		case <-time.After(testTimeout):
			t.Fatalf("only %d requests refused", len(refused))
		}
	}
	for _, r := range refused {
		wantError(t, r, http.StatusTooManyRequests, "queue full")
		if r.header.Get("Retry-After") != "1" {
			t.Fatalf("429 with Retry-After %q, want 1", r.header.Get("Retry-After"))
		}
	}
	e.unblock()
	for range 2 {
		select {
		case r := <-results:
			if r.code != http.StatusOK {
				t.Fatalf("admitted request finished with %d: %s", r.code, r.body)
			}
		case <-time.After(testTimeout):
			t.Fatal("admitted requests did not finish")
		}
	}
}

func TestTimeoutInQueue(t *testing.T) {
	e := newEnv(t, Config{})
	first := make(chan result, 1)
	go func() { first <- e.post(t, "/v2/models/block/infer", blockRequest) }()
	waitStarted(t, e)
	// Queued behind the blocked run, 1ms of patience expires in the queue.
	r := e.post(t, "/v2/models/block/infer", `{"parameters":{"timeout":1000},`+blockRequest[1:])
	wantError(t, r, http.StatusGatewayTimeout, "deadline")
	e.unblock()
	select {
	case r := <-first:
		if r.code != http.StatusOK {
			t.Fatalf("first request: %d %s", r.code, r.body)
		}
	case <-time.After(testTimeout):
		t.Fatal("first request did not finish")
	}
}

func TestShutdownWaitsForInflight(t *testing.T) {
	e := newEnv(t, Config{})
	first := make(chan result, 1)
	go func() { first <- e.post(t, "/v2/models/block/infer", blockRequest) }()
	waitStarted(t, e)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		done <- e.http.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(testShortTimeout):
	}
	e.unblock()
	select {
	case r := <-first:
		if r.code != http.StatusOK {
			t.Fatalf("in-flight request: %d %s", r.code, r.body)
		}
	case <-time.After(testTimeout):
		t.Fatal("in-flight request not answered")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Shutdown did not return")
	}
}

func TestRepository(t *testing.T) {
	e := newEnv(t, Config{})
	index := func(t *testing.T, body string) []indexEntry {
		t.Helper()
		r := e.post(t, "/v2/repository/index", body)
		if r.code != http.StatusOK || r.header.Get("Content-Type") != contentJSON {
			t.Fatalf("index: %d %q %s", r.code, r.header.Get("Content-Type"), r.body)
		}
		var out []indexEntry
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	find := func(rows []indexEntry, name, version string) *indexEntry {
		for i := range rows {
			if rows[i].Name == name && rows[i].Version == version {
				return &rows[i]
			}
		}
		return nil
	}
	all := index(t, "")
	rows := len(tensor.AllDataTypes)
	for _, m := range testModels {
		rows += len(m.versions)
	}
	if len(all) != rows {
		t.Fatalf("index has %d rows: %+v", len(all), all)
	}
	if row := find(all, "simple", "2"); row == nil || row.State != "READY" || row.Reason != "" {
		t.Fatalf("simple v2 row %+v", row)
	}
	if r := e.post(t, "/v2/repository/models/simple/unload", ""); r.code != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("unload: %d %s", r.code, r.body)
	}
	all = index(t, "{}")
	if row := find(all, "simple", "1"); row == nil || row.State == "READY" || row.Reason == "" {
		t.Fatalf("simple v1 after unload: %+v", row)
	}
	ready := index(t, `{"ready": true}`)
	if find(ready, "simple", "1") != nil || find(ready, "fail", "1") == nil {
		t.Fatalf("ready filter: %+v", ready)
	}
	for _, row := range ready {
		if row.State != "READY" {
			t.Fatalf("ready filter kept %+v", row)
		}
	}
	// Raw check of the wire names.
	r := e.post(t, "/v2/repository/index", `{"ready":true}`)
	if !bytes.Contains(r.body, []byte(`{"name":"fail","version":"1","state":"READY"}`)) {
		t.Fatalf("index document %s", r.body)
	}

	t.Run("load", func(t *testing.T) {
		if r := e.post(t, "/v2/repository/models/simple/load", ""); r.code != http.StatusOK {
			t.Fatalf("load: %d %s", r.code, r.body)
		}
		if r := e.post(t, "/v2/models/simple/infer", simpleRequest("")); r.code != http.StatusOK {
			t.Fatalf("infer after load: %d %s", r.code, r.body)
		}
	})
	t.Run("load with config override", func(t *testing.T) {
		// The override keeps only version 1 (the default policy: latest 1
		// would pick 2).
		r := e.post(t, "/v2/repository/models/simple/load", `{"parameters":{"config":"{\"version_policy\": {\"specific\": [1]}}"}}`)
		if r.code != http.StatusOK {
			t.Fatalf("load: %d %s", r.code, r.body)
		}
		if got := e.get(t, "/v2/models/simple/versions/2/ready"); got.code == http.StatusOK {
			t.Fatal("version 2 still ready after an override selecting only version 1")
		}
		if got := e.get(t, "/v2/models/simple/versions/1/ready"); got.code != http.StatusOK {
			t.Fatalf("version 1 ready: %d", got.code)
		}
	})
	loadErrors := []struct {
		name, path, body string
		code             int
		msg              string
	}{
		{"unknown model", "/v2/repository/models/nope/load", "", 404, `model "nope"`},
		{"bad override", "/v2/repository/models/simple/load", `{"parameters":{"config":"max_batch_size: lots"}}`, 400, "max_batch_size"},
		{"override not string", "/v2/repository/models/simple/load", `{"parameters":{"config":{"a":1}}}`, 400, `"config" must be a string`},
		{"file upload", "/v2/repository/models/simple/load", `{"parameters":{"file:1/model.onnx":"AAAA"}}`, 400, "not supported"},
		{"malformed body", "/v2/repository/models/simple/load", `{"parameters":`, 400, "load request"},
		{"malformed index body", "/v2/repository/index", `{"ready":"yes"}`, 400, "repository index request"},
		{"unload unknown", "/v2/repository/models/nope/unload", "", 404, `model "nope"`},
		{"unknown action", "/v2/repository/models/simple/reload", "", 404, "no such endpoint"},
	}
	for _, tt := range loadErrors {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, e.post(t, tt.path, tt.body), tt.code, tt.msg)
		})
	}
}

func TestManagementToken(t *testing.T) {
	e := newEnv(t, Config{AdminToken: "s3cret"})
	tests := []struct {
		name   string
		header map[string]string
		code   int
	}{
		{"missing", nil, http.StatusUnauthorized},
		{"wrong", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"wrong scheme", map[string]string{"Authorization": "Basic s3cret"}, http.StatusUnauthorized},
		{"right", map[string]string{"Authorization": "Bearer s3cret"}, http.StatusOK},
	}
	for _, path := range []string{"/v2/repository/index", "/v2/repository/models/fail/load", "/v2/repository/models/fail/unload"} {
		for _, tt := range tests {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				r := e.do(t, http.MethodPost, path, nil, tt.header)
				if tt.code == http.StatusOK {
					if r.code != http.StatusOK {
						t.Fatalf("status %d: %s", r.code, r.body)
					}
					return
				}
				wantError(t, r, tt.code, "unauthorized")
				jsonEqual(t, r.body, `{"error":"unauthorized"}`)
			})
		}
	}
	// Inference needs no token.
	if r := e.post(t, "/v2/models/simple/infer", simpleRequest("")); r.code != http.StatusOK {
		t.Fatalf("infer: %d %s", r.code, r.body)
	}
}

// TestManagementLoopbackOnly checks the rule without a token: loopback
// callers are served, others refused with 403. An in-memory listener lets
// the test pose as a remote peer.
func TestManagementLoopbackOnly(t *testing.T) {
	ln := fasthttputil.NewInmemoryListener()
	newEnvWith(t, Config{AdminAllowLoopback: true}, func(s *Server, l net.Listener) error { return s.Serve(l) }, ln)
	tests := []struct {
		name string
		peer net.Addr
		code int
	}{
		{"loopback", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, http.StatusOK},
		{"loopback v6", &net.TCPAddr{IP: net.IPv6loopback, Port: 40000}, http.StatusOK},
		{"remote", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.DialWithLocalAddr(tt.peer) }}
			defer c.CloseIdleConnections()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://onnxserve/v2/repository/index")
			req.Header.SetMethod(http.MethodPost)
			if err := c.DoTimeout(req, resp, testTimeout); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tt.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode(), tt.code, resp.Body())
			}
			if tt.code == http.StatusForbidden && !bytes.Contains(resp.Body(), []byte("loopback")) {
				t.Fatalf("403 body %s", resp.Body())
			}
		})
	}
}

// TestManagementClosedByDefault: without an admin token and without
// AdminAllowLoopback the management API refuses every caller, loopback
// included (a sidecar's), with a 403 naming the flags that open it;
// inference stays open.
func TestManagementClosedByDefault(t *testing.T) {
	e := newEnv(t, Config{}, closedManagement)
	for _, path := range []string{"/v2/repository/index", "/v2/repository/models/simple/load", "/v2/repository/models/simple/unload"} {
		t.Run(path, func(t *testing.T) {
			r := e.post(t, path, "")
			wantError(t, r, http.StatusForbidden, "--admin-token-file")
			if !strings.Contains(string(r.body), "--admin-allow-loopback") {
				t.Errorf("403 body %s does not name --admin-allow-loopback", r.body)
			}
		})
	}
	if r := e.post(t, "/v2/models/simple/infer", simpleRequest("")); r.code != http.StatusOK {
		t.Fatalf("infer: %d %s", r.code, r.body)
	}
}

// TestRoutingKey checks where the routing key comes from, on the "split"
// model whose 50/50 split is sticky on the x-user key: the x-user header,
// else the x-user parameter, else routing_key.
func TestRoutingKey(t *testing.T) {
	e := newEnv(t, Config{})
	version := func(t *testing.T, header map[string]string, params string) string {
		t.Helper()
		r := e.do(t, http.MethodPost, "/v2/models/split/infer", []byte(simpleRequest(`"parameters":`+params+`,`)), header)
		if r.code != http.StatusOK {
			t.Fatalf("status %d: %s", r.code, r.body)
		}
		var doc struct {
			Version string `json:"model_version"`
		}
		if err := json.Unmarshal(r.body, &doc); err != nil {
			t.Fatal(err)
		}
		return doc.Version
	}
	// Find a key pinned to each version.
	keys := map[string]string{}
	for i := 0; i < 64 && len(keys) < 2; i++ {
		k := "user-" + strconv.Itoa(i)
		v := version(t, map[string]string{"X-User": k}, `{}`)
		if again := version(t, map[string]string{"X-User": k}, `{}`); again != v {
			t.Fatalf("key %s went to version %s, then %s", k, v, again)
		}
		if _, ok := keys[v]; !ok {
			keys[v] = k
		}
	}
	k1, k2 := keys["1"], keys["2"]
	if k1 == "" || k2 == "" {
		t.Fatalf("64 keys did not reach both versions: %v", keys)
	}
	tests := []struct {
		name   string
		header map[string]string
		params string
		want   string
	}{
		{"header wins over parameters", map[string]string{"X-User": k1}, `{"x-user":"` + k2 + `","routing_key":"` + k2 + `"}`, "1"},
		{"sticky parameter", nil, `{"x-user":"` + k2 + `"}`, "2"},
		{"sticky parameter wins over routing_key", nil, `{"routing_key":"` + k1 + `","x-user":"` + k2 + `"}`, "2"},
		{"routing_key parameter", nil, `{"routing_key":"` + k1 + `"}`, "1"},
		{"other header ignored", map[string]string{"X-Routing-Key": k2}, `{"routing_key":"` + k1 + `"}`, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 3 {
				if got := version(t, tt.header, tt.params); got != tt.want {
					t.Fatalf("served by version %s, want %s", got, tt.want)
				}
			}
		})
	}
}

// TestRequestIDs checks the three sources of a request id: the client's id
// field, else its x-request-id header, else one the server makes; each
// comes back in the body, the response header and the access record, on
// success and on failure.
func TestRequestIDs(t *testing.T) {
	var mu sync.Mutex
	var observed []string
	e := newEnv(t, Config{Observe: func(_, _, id string, _ int, _ time.Duration) {
		mu.Lock()
		observed = append(observed, id)
		mu.Unlock()
	}})
	tests := []struct {
		name, body, header, want string
	}{
		{"client id", simpleRequest(`"id":"from-body",`), "from-header", "from-body"},
		{"header id", simpleRequest(""), "from-header", "from-header"},
		{"generated", simpleRequest(""), "", ""},
		{"failed, header id", `{"inputs":`, "bad-one", "bad-one"},
		{"failed, generated", `{"inputs":`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			observed = nil
			mu.Unlock()
			h := map[string]string{}
			if tt.header != "" {
				h[transport.RequestIDHeader] = tt.header
			}
			r := e.do(t, http.MethodPost, "/v2/models/simple/infer", []byte(tt.body), h)
			got := r.header.Get(transport.RequestIDHeader)
			if tt.want != "" && got != tt.want {
				t.Errorf("x-request-id %q, want %q", got, tt.want)
			}
			if tt.want == "" {
				if u, err := uuid.Parse(got); err != nil || u.Version() != 7 {
					t.Errorf("generated x-request-id %q is not a UUID v7", got)
				}
			}
			if r.code == http.StatusOK {
				var doc struct{ ID string }
				if err := json.Unmarshal(r.body, &doc); err != nil || doc.ID != got {
					t.Errorf("body id %q (%v), header %q", doc.ID, err, got)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(observed) != 1 || observed[0] != got {
				t.Errorf("observed ids %q, want [%q]", observed, got)
			}
		})
	}
}

func TestObserve(t *testing.T) {
	type call struct {
		model, version string
		code           int
	}
	var mu sync.Mutex
	var calls []call
	e := newEnv(t, Config{MaxRequestBodySize: 4096, Observe: func(model, version, _ string, code int, d time.Duration) {
		if d < 0 {
			panic(fmt.Sprintf("negative duration %v", d))
		}
		mu.Lock()
		calls = append(calls, call{model, version, code})
		mu.Unlock()
	}})
	e.post(t, "/v2/models/simple/infer", simpleRequest(""))
	e.post(t, "/v2/models/simple/versions/1/infer", simpleRequest(""))
	e.post(t, "/v2/models/nope/infer", simpleRequest(""))
	e.post(t, "/v2/models/simple/versions/1/infer", `{`)
	e.post(t, "/v2/models/panic/infer", `{"inputs":[{"name":"IN","shape":[1],"datatype":"INT32","data":[1]}]}`)
	e.post(t, "/v2/models/simple/infer", `{"id":"`+strings.Repeat("x", 8192)+`"}`)
	// Not inference requests: not observed.
	e.get(t, "/v2/health/live")
	e.get(t, "/v2/models/simple")
	e.get(t, "/v2/models/simple/infer")
	e.post(t, "/v2/repository/index", "")
	want := []call{
		{"simple", "2", 200},
		{"simple", "1", 200},
		{"", "", 404}, // labels only ever name what the server has
		{"simple", "1", 400},
		{"", "", 500},
		{"simple", "", 413},
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(calls, want) {
		t.Fatalf("observed %+v, want %+v", calls, want)
	}
}
