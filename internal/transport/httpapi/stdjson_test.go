package httpapi

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// The baseline the hand-written decoder (package jsonscan and decode.go)
// is measured against: the same v2 infer request decoded with
// encoding/json into declared structs, then each input's data into a
// typed slice and the tensor layout, as a server without its own decoder
// would. jsonscan's doc comment records the figures.

// stdRequest is a v2 infer request as encoding/json reads it.
type stdRequest struct {
	ID         string         `json:"id"`
	Parameters map[string]any `json:"parameters"`
	Inputs     []stdInput     `json:"inputs"`
	Outputs    []stdOutput    `json:"outputs"`
}

type stdInput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters"`
	Data       json.RawMessage `json:"data"`
}

type stdOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters"`
}

// decodeWithEncodingJSON decodes body's inputs with encoding/json. It
// handles the flat FP32 and INT32 data the benchmark sends.
func decodeWithEncodingJSON(body []byte) ([]tensor.Tensor, error) {
	var req stdRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	out := make([]tensor.Tensor, len(req.Inputs))
	for i, in := range req.Inputs {
		dt, ok := tensor.ParseDataType(in.Datatype)
		if !ok {
			return nil, fmt.Errorf("input %q: unknown datatype %q", in.Name, in.Datatype)
		}
		var data []byte
		switch dt {
		case tensor.FP32:
			var v []float32
			if err := json.Unmarshal(in.Data, &v); err != nil {
				return nil, fmt.Errorf("input %q: %w", in.Name, err)
			}
			data = make([]byte, 0, 4*len(v))
			for _, f := range v {
				data = binary.LittleEndian.AppendUint32(data, math.Float32bits(f))
			}
		case tensor.Int32:
			var v []int32
			if err := json.Unmarshal(in.Data, &v); err != nil {
				return nil, fmt.Errorf("input %q: %w", in.Name, err)
			}
			data = make([]byte, 0, 4*len(v))
			for _, n := range v {
				data = binary.LittleEndian.AppendUint32(data, uint32(n))
			}
		default:
			return nil, fmt.Errorf("input %q: the baseline does not decode %s", in.Name, dt)
		}
		out[i] = tensor.Tensor{Name: in.Name, DataType: dt, Shape: in.Shape, Data: data}
	}
	return out, nil
}

// simpleBenchRequest is an infer request for the bundled `simple` model: two
// INT32 [1,16] inputs, both outputs asked for.
func simpleBenchRequest() []byte {
	b := []byte(`{"id":"42","inputs":[`)
	for k, name := range []string{"INPUT0", "INPUT1"} {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":"`+name+`","shape":[1,16],"datatype":"INT32","data":[`...)
		for i := range 16 {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(i*(k+1)-7), 10)
		}
		b = append(b, "]}"...)
	}
	return append(b, `],"outputs":[{"name":"OUTPUT0"},{"name":"OUTPUT1"}]}`...)
}

// ppocrBenchRequest is an infer request for PaddleOCR's text-direction
// classifier: one FP32 [1,3,48,192] image of values in [0,1), printed as
// clients print float32 values (the shortest text that reads back the
// same). The seed is fixed so every run decodes the same document.
func ppocrBenchRequest() []byte {
	rng := rand.New(rand.NewPCG(3, 48))
	b := []byte(`{"inputs":[{"name":"x","shape":[1,3,48,192],"datatype":"FP32","data":[`)
	for i := range 3 * 48 * 192 {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(rng.Float32()), 'g', -1, 32)
	}
	return append(b, `]}]}`...)
}

// stdCases are the requests both decoders are compared on.
var stdCases = []struct {
	name string
	body func() []byte
}{
	{"simple_INT32x2x16", simpleBenchRequest},
	{"ppocr_FP32x1x3x48x192", ppocrBenchRequest},
}

// TestEncodingJSONBaselineMatches makes the benchmark a comparison of
// equals: on its requests, the baseline and the server's decoder produce
// the same tensors.
func TestEncodingJSONBaselineMatches(t *testing.T) {
	for _, c := range stdCases {
		t.Run(c.name, func(t *testing.T) {
			body := c.body()
			want, err := decodeWithEncodingJSON(body)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeInferRequest(body, -1, "", guard.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Inputs) != len(want) {
				t.Fatalf("decoded %d inputs, the baseline %d", len(got.Inputs), len(want))
			}
			for i, w := range want {
				g := got.Inputs[i]
				if g.Name != w.Name || g.DataType != w.DataType || !slices.Equal(g.Shape, w.Shape) || string(g.Data) != string(w.Data) {
					t.Errorf("input %d: got %s %s %v (%d bytes), the baseline %s %s %v (%d bytes)",
						i, g.Name, g.DataType, g.Shape, len(g.Data), w.Name, w.DataType, w.Shape, len(w.Data))
				}
			}
		})
	}
}

// BenchmarkDecodeVsEncodingJSON decodes the same requests with the
// server's decoder and with the encoding/json baseline; jsonscan's doc
// comment records the figures and the command.
func BenchmarkDecodeVsEncodingJSON(b *testing.B) {
	for _, c := range stdCases {
		body := c.body()
		b.Run(c.name+"/jsonscan", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeInferRequest(body, -1, "", guard.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/encoding_json", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeWithEncodingJSON(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
