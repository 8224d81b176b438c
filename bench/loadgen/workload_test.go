package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"testing"
)

func simpleOutputs(w *workload, v int, tamper func(sum, diff []byte)) []output {
	a, b := w.variants[v][0], w.variants[v][1]
	sum, diff := make([]byte, len(a)), make([]byte, len(a))
	for i := 0; i < len(a); i += 4 {
		x, y := int32(binary.LittleEndian.Uint32(a[i:])), int32(binary.LittleEndian.Uint32(b[i:]))
		binary.LittleEndian.PutUint32(sum[i:], uint32(x+y))
		binary.LittleEndian.PutUint32(diff[i:], uint32(x-y))
	}
	if tamper != nil {
		tamper(sum, diff)
	}
	return []output{
		{name: "OUTPUT0", datatype: "INT32", shape: []int64{1, 16}, data: sum},
		{name: "OUTPUT1", datatype: "INT32", shape: []int64{1, 16}, data: diff},
	}
}

func TestVerifySimple(t *testing.T) {
	w, err := newWorkload("simple", 1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		outs func() []output
		ok   bool
	}{
		{"correct", func() []output { return simpleOutputs(w, 3, nil) }, true},
		{"another request's rows", func() []output { return simpleOutputs(w, 4, nil) }, false},
		{"one element off", func() []output {
			return simpleOutputs(w, 3, func(sum, _ []byte) { sum[60]++ })
		}, false},
		{"outputs swapped", func() []output {
			o := simpleOutputs(w, 3, nil)
			o[0], o[1] = o[1], o[0]
			return o
		}, false},
		{"batch of two", func() []output {
			o := simpleOutputs(w, 3, nil)
			o[0].shape = []int64{2, 16}
			return o
		}, false},
		{"short data", func() []output {
			o := simpleOutputs(w, 3, nil)
			o[1].data = o[1].data[:60]
			return o
		}, false},
		{"missing output", func() []output { return simpleOutputs(w, 3, nil)[:1] }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := w.verify(3, tt.outs())
			if tt.ok && err != nil {
				t.Fatalf("verify: %v", err)
			}
			if !tt.ok && !errors.Is(err, errVerify) {
				t.Fatalf("verify = %v, want an error wrapping errVerify", err)
			}
		})
	}
}

func floats(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func TestVerifySoftmaxKeepsFirstAnswer(t *testing.T) {
	w, err := newWorkload("ocr_cls", 1)
	if err != nil {
		t.Fatal(err)
	}
	out := func(a, b float32) []output {
		return []output{{name: "softmax_0.tmp_0", datatype: "FP32", shape: []int64{1, 2}, data: floats(a, b)}}
	}
	steps := []struct {
		name    string
		variant int
		outs    []output
		ok      bool
	}{
		{"first answer becomes the reference", 0, out(0.25, 0.75), true},
		{"same answer within tolerance", 0, out(0.2502, 0.7498), true},
		{"different answer to the same input", 0, out(0.75, 0.25), false},
		{"another variant has its own reference", 1, out(0.75, 0.25), true},
		{"row does not sum to one", 2, out(0.5, 0.6), false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := w.verify(s.variant, s.outs)
			if s.ok != (err == nil) {
				t.Fatalf("verify = %v, want ok=%v", err, s.ok)
			}
		})
	}
}

func TestWorkloadVariantsDiffer(t *testing.T) {
	for _, name := range []string{"simple", "classifier", "ocr_cls"} {
		t.Run(name, func(t *testing.T) {
			w, err := newWorkload(name, 7)
			if err != nil {
				t.Fatal(err)
			}
			if len(w.variants) != variantCount {
				t.Fatalf("%d variants, want %d", len(w.variants), variantCount)
			}
			for v := 1; v < len(w.variants); v++ {
				if bytes.Equal(w.variants[v][0], w.variants[0][0]) {
					t.Fatalf("variant %d repeats variant 0: swapped answers would pass", v)
				}
			}
			for i, s := range w.inputs {
				if got := len(w.variants[0][i]); got != s.bytes() {
					t.Fatalf("input %s: %d bytes, want %d", s.name, got, s.bytes())
				}
			}
		})
	}
	if _, err := newWorkload("nope", 1); err == nil {
		t.Fatal("unknown workload accepted")
	}
}

func TestJSONRequestIsValidV2(t *testing.T) {
	w, err := newWorkload("simple", 1)
	if err != nil {
		t.Fatal(err)
	}
	var req struct {
		Inputs []struct {
			Name     string    `json:"name"`
			Datatype string    `json:"datatype"`
			Shape    []int64   `json:"shape"`
			Data     []float64 `json:"data"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(jsonRequest(w.inputs, w.variants[2]), &req); err != nil {
		t.Fatalf("request is not JSON: %v", err)
	}
	if len(req.Inputs) != 2 || req.Inputs[1].Name != "INPUT1" || req.Inputs[1].Datatype != "INT32" || len(req.Inputs[1].Data) != 16 {
		t.Fatalf("unexpected request %+v", req)
	}
	if got := rawFromJSON("INT32", req.Inputs[1].Data); !bytes.Equal(got, w.variants[2][1]) {
		t.Fatal("JSON data does not round-trip to the raw input")
	}
}

func TestBinaryRequestLayout(t *testing.T) {
	w, err := newWorkload("simple", 1)
	if err != nil {
		t.Fatal(err)
	}
	body, hl := binaryRequest(w.inputs, w.variants[1])
	var hdr struct {
		Inputs []struct {
			Parameters struct {
				BinaryDataSize int `json:"binary_data_size"`
			} `json:"parameters"`
		} `json:"inputs"`
		Parameters struct {
			BinaryDataOutput bool `json:"binary_data_output"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal(body[:hl], &hdr); err != nil {
		t.Fatalf("header is not JSON: %v", err)
	}
	if !hdr.Parameters.BinaryDataOutput || len(hdr.Inputs) != 2 || hdr.Inputs[0].Parameters.BinaryDataSize != 64 {
		t.Fatalf("unexpected header %+v", hdr)
	}
	want := append(append([]byte(nil), w.variants[1][0]...), w.variants[1][1]...)
	if !bytes.Equal(body[hl:], want) {
		t.Fatal("binary section is not the raw inputs in order")
	}
}

func TestDecodeHTTPResponse(t *testing.T) {
	sum := floats(1, 2)
	mixed := `{"model_name":"m","outputs":[{"name":"A","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}},{"name":"B","datatype":"INT32","shape":[1,1],"data":[-3]}]}`
	oversized := `{"outputs":[{"name":"A","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":9}}]}`
	tests := []struct {
		name      string
		code      int
		body, hdr []byte
		wantErr   bool
		check     func(t *testing.T, outs []output)
	}{
		{name: "json", code: 200, body: []byte(`{"outputs":[{"name":"OUTPUT0","datatype":"INT32","shape":[1,2],"data":[5,-7]}]}`),
			check: func(t *testing.T, outs []output) {
				if len(outs) != 1 || !bytes.Equal(outs[0].data, []byte{5, 0, 0, 0, 0xf9, 0xff, 0xff, 0xff}) {
					t.Fatalf("outputs %+v", outs)
				}
			}},
		{name: "binary and json mixed", code: 200, body: append([]byte(mixed), sum...), hdr: []byte(strconv.Itoa(len(mixed))),
			check: func(t *testing.T, outs []output) {
				if len(outs) != 2 || !bytes.Equal(outs[0].data, sum) || int32(binary.LittleEndian.Uint32(outs[1].data)) != -3 {
					t.Fatalf("outputs %+v", outs)
				}
			}},
		{name: "error status", code: 429, body: []byte(`{"error":"queue full"}`), wantErr: true},
		{name: "header length beyond body", code: 200, body: []byte(`{}`), hdr: []byte("99"), wantErr: true},
		{name: "binary size beyond body", code: 200, body: append([]byte(oversized), sum...), hdr: []byte(strconv.Itoa(len(oversized))), wantErr: true},
		{name: "binary bytes left over", code: 200, body: append([]byte(mixed), append(sum, 0)...), hdr: []byte(strconv.Itoa(len(mixed))), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outs, err := decodeHTTPResponse(tt.code, tt.body, tt.hdr, nil)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, outs)
		})
	}
}
