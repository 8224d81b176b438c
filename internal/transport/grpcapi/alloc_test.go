//go:build !race

package grpcapi

import (
	"testing"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// TestDecodeRawAllocs proves raw inputs are aliased: decoding allocates the
// tensor slice and nothing per input byte.
func TestDecodeRawAllocs(t *testing.T) {
	req := &inference.ModelInferRequest{
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			input("INPUT0", "INT32", []int64{1, 16}, nil),
			input("INPUT1", "BYTES", []int64{2}, nil),
		},
		RawInputContents: [][]byte{make([]byte, 64), append(append(le32(1), 'a'), append(le32(2), "bc"...)...)},
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := decodeInputs(req, guard.Limits{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("decodeInputs allocates %v times per request, want at most 1", allocs)
	}
}

// TestEncodeResponseAllocs bounds response encoding: the message, its two
// slices and one block of output descriptors, whatever the output count.
func TestEncodeResponseAllocs(t *testing.T) {
	out := make([]tensor.Tensor, 4)
	for i := range out {
		out[i] = tensor.Tensor{Name: "OUT", DataType: tensor.FP32, Shape: []int64{1, 4}, Data: make([]byte, 16)}
	}
	resp := &serving.Response{Model: "m", Version: "1", Outputs: out}
	allocs := testing.AllocsPerRun(100, func() { _ = encodeResponse(resp, "id") })
	if allocs > 4 {
		t.Fatalf("encodeResponse allocates %v times, want at most 4", allocs)
	}
}
