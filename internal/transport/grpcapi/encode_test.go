package grpcapi

import (
	"fmt"
	"testing"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TestEncodeResponse covers every way encodeResponse lays a response out
// (one block for up to one and up to four outputs, separate slices beyond):
// each output keeps its name, datatype, shape and aliased data.
func TestEncodeResponse(t *testing.T) {
	for _, n := range []int{0, 1, 2, 4, 5} {
		t.Run(fmt.Sprint(n, " outputs"), func(t *testing.T) {
			out := make([]tensor.Tensor, n)
			for i := range out {
				out[i] = tensor.Tensor{Name: fmt.Sprint("OUT", i), DataType: tensor.Int32, Shape: []int64{1, int64(i)}, Data: make([]byte, 4*i)}
			}
			got := encodeResponse(&serving.Response{Model: "m", Version: "2", Outputs: out}, "id")
			if got.GetModelName() != "m" || got.GetModelVersion() != "2" || got.GetId() != "id" {
				t.Fatalf("response labelled %q %q %q, want m 2 id", got.GetModelName(), got.GetModelVersion(), got.GetId())
			}
			if len(got.GetOutputs()) != n || len(got.GetRawOutputContents()) != n {
				t.Fatalf("%d outputs and %d raw contents, want %d", len(got.GetOutputs()), len(got.GetRawOutputContents()), n)
			}
			for i, o := range got.GetOutputs() {
				if o.GetName() != out[i].Name || o.GetDatatype() != "INT32" || formatShape(o.GetShape()) != formatShape(out[i].Shape) {
					t.Errorf("output %d = %v, want %+v", i, o, out[i])
				}
				raw := got.GetRawOutputContents()[i]
				if len(raw) != len(out[i].Data) || (len(raw) > 0 && &raw[0] != &out[i].Data[0]) {
					t.Errorf("output %d: raw contents are not the tensor's data", i)
				}
			}
		})
	}
}
