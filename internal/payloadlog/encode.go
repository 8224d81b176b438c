package payloadlog

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// The v2 JSON bodies of payload events. The HTTP front end has a faster
// encoder of its own, but it lives in transport, which this package may not
// import (DESIGN §3); these bodies are built with encoding/json on the
// tap's goroutine, off the request path, where their cost is no one's
// latency.

// v2Tensor is one tensor of a v2 JSON request or response.
type v2Tensor struct {
	Name     string          `json:"name"`
	Shape    []int64         `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data"`
}

// v2Request is the body of a request event: the inputs the model ran on,
// those named in redact left out.
type v2Request struct {
	ID     string     `json:"id,omitempty"`
	Inputs []v2Tensor `json:"inputs"`
}

// v2Response is the body of a response event: every output of the model,
// or the error of a failed request.
type v2Response struct {
	ModelName    string     `json:"model_name"`
	ModelVersion string     `json:"model_version"`
	ID           string     `json:"id,omitempty"`
	Outputs      []v2Tensor `json:"outputs,omitempty"`
	Error        string     `json:"error,omitempty"`
}

func toV2(ts []tensor.Tensor) []v2Tensor {
	out := make([]v2Tensor, 0, len(ts))
	for _, t := range ts {
		out = append(out, v2Tensor{Name: t.Name, Shape: t.Shape, Datatype: t.DataType.String(), Data: appendData(nil, t)})
	}
	return out
}

// appendData appends t's elements as a flat JSON array, as the v2 JSON
// protocol writes them. JSON cannot spell NaN or the infinities: such
// elements are written as null, as the HTTP front end does.
func appendData(buf []byte, t tensor.Tensor) []byte {
	d := t.Data
	buf = append(buf, '[')
	sep := func(i int) {
		if i > 0 {
			buf = append(buf, ',')
		}
	}
	float := func(f float64, bits int) {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			buf = append(buf, "null"...)
			return
		}
		buf = strconv.AppendFloat(buf, f, 'g', -1, bits)
	}
	switch t.DataType {
	case tensor.Bool:
		for i, b := range d {
			sep(i)
			buf = strconv.AppendBool(buf, b != 0)
		}
	case tensor.Uint8:
		for i, b := range d {
			sep(i)
			buf = strconv.AppendUint(buf, uint64(b), 10)
		}
	case tensor.Int8:
		for i, b := range d {
			sep(i)
			buf = strconv.AppendInt(buf, int64(int8(b)), 10)
		}
	case tensor.Uint16:
		for i := 0; i+2 <= len(d); i += 2 {
			sep(i)
			buf = strconv.AppendUint(buf, uint64(binary.LittleEndian.Uint16(d[i:])), 10)
		}
	case tensor.Int16:
		for i := 0; i+2 <= len(d); i += 2 {
			sep(i)
			buf = strconv.AppendInt(buf, int64(int16(binary.LittleEndian.Uint16(d[i:]))), 10)
		}
	case tensor.Uint32:
		for i := 0; i+4 <= len(d); i += 4 {
			sep(i)
			buf = strconv.AppendUint(buf, uint64(binary.LittleEndian.Uint32(d[i:])), 10)
		}
	case tensor.Int32:
		for i := 0; i+4 <= len(d); i += 4 {
			sep(i)
			buf = strconv.AppendInt(buf, int64(int32(binary.LittleEndian.Uint32(d[i:]))), 10)
		}
	case tensor.Uint64:
		for i := 0; i+8 <= len(d); i += 8 {
			sep(i)
			buf = strconv.AppendUint(buf, binary.LittleEndian.Uint64(d[i:]), 10)
		}
	case tensor.Int64:
		for i := 0; i+8 <= len(d); i += 8 {
			sep(i)
			buf = strconv.AppendInt(buf, int64(binary.LittleEndian.Uint64(d[i:])), 10)
		}
	case tensor.FP16:
		for i := 0; i+2 <= len(d); i += 2 {
			sep(i)
			float(float64(tensor.FP16ToFloat32(binary.LittleEndian.Uint16(d[i:]))), 32)
		}
	case tensor.BF16:
		for i := 0; i+2 <= len(d); i += 2 {
			sep(i)
			float(float64(tensor.BF16ToFloat32(binary.LittleEndian.Uint16(d[i:]))), 32)
		}
	case tensor.FP32:
		for i := 0; i+4 <= len(d); i += 4 {
			sep(i)
			float(float64(math.Float32frombits(binary.LittleEndian.Uint32(d[i:]))), 32)
		}
	case tensor.FP64:
		for i := 0; i+8 <= len(d); i += 8 {
			sep(i)
			float(math.Float64frombits(binary.LittleEndian.Uint64(d[i:])), 64)
		}
	case tensor.Bytes:
		n, _ := tensor.ElementCount(t.Shape)
		elems, _ := tensor.BytesElements(d, n)
		for i, e := range elems {
			sep(i)
			// encoding/json writes invalid UTF-8 as U+FFFD, keeping the
			// line valid JSON whatever the bytes.
			s, _ := json.Marshal(string(e))
			buf = append(buf, s...)
		}
	}
	return append(buf, ']')
}

// copyTensors copies ts, data included, leaving out names in skip.
func copyTensors(ts []tensor.Tensor, skip map[string]bool) []tensor.Tensor {
	out := make([]tensor.Tensor, 0, len(ts))
	for _, t := range ts {
		if skip[t.Name] {
			continue
		}
		out = append(out, tensor.Tensor{Name: t.Name, DataType: t.DataType,
			Shape: append([]int64(nil), t.Shape...), Data: append([]byte(nil), t.Data...)})
	}
	return out
}
