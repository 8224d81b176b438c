//go:build !race

package grpcapi

import (
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// Allocations of a whole ModelInfer call (TestModelInferAllocs), client
// and server together. Before every request got an id they were 208 (client
// id) and 206 (no id). The id's header metadata costs grpc-go 9 more across
// both ends (the MD maps it builds, joins and parses), and a generated id 3
// more (its text and the client's copy of it among them): 217 and 218. The
// server's own code pays for them: a response in one block
// (encodeResponse), marshalled parts without their own slice (buffers), no
// allocation for a typed-contents request before it goes to protobuf
// (commonInput), typed inputs' data in one block (contentsArena) and their
// tensors inside the call, which measures 207 and 208. The receive guard
// that cuts off a stalled request message (recvGuard) adds 7: the guard,
// which is also the call's context, and the cancel context under it (five
// inside package context, most of them registering it with grpc-go's
// stream context). A timer and a shutdown hook per call cost 14.
const (
	maxModelInferAllocsClientID = 207 + 7
	maxModelInferAllocsNoID     = 208 + 7
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
		if _, err := decodeInputs(req, guard.Limits{}, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("decodeInputs allocates %v times per request, want at most 1", allocs)
	}
}

// TestDecodeContentsAllocs bounds decoding typed contents into the caller's
// tensors: one block for the data of all the inputs.
func TestDecodeContentsAllocs(t *testing.T) {
	req := simpleRequest("")
	dst := make([]tensor.Tensor, 4)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := decodeInputs(req, guard.Limits{}, dst); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("decodeInputs allocates %v times per request, want at most 1", allocs)
	}
}

// TestEncodeResponseAllocs bounds response encoding: one block for the
// message, its output descriptors and both slices, up to four outputs.
func TestEncodeResponseAllocs(t *testing.T) {
	out := make([]tensor.Tensor, 4)
	for i := range out {
		out[i] = tensor.Tensor{Name: "OUT", DataType: tensor.FP32, Shape: []int64{1, 4}, Data: make([]byte, 16)}
	}
	resp := &serving.Response{Model: "m", Version: "1", Outputs: out}
	allocs := testing.AllocsPerRun(100, func() { _ = encodeResponse(resp, "id") })
	if allocs > 1 {
		t.Fatalf("encodeResponse allocates %v times, want at most 1", allocs)
	}
}

// TestModelInferAllocs bounds the allocations of a whole ModelInfer call,
// client and server together over a loopback connection, through the real
// serving core and batcher to the fake "simple" model.
func TestModelInferAllocs(t *testing.T) {
	e := newEnv(t, Config{Observe: func(string, string, string, int, time.Duration) {}})
	for _, tt := range []struct {
		name      string
		id        string
		maxAllocs float64
	}{
		{"client id", "abc", maxModelInferAllocsClientID},
		{"generated id", "", maxModelInferAllocsNoID},
	} {
		req := simpleRequest(tt.id)
		ctx := testCtx(t)
		allocs := testing.AllocsPerRun(300, func() {
			if _, err := e.client.ModelInfer(ctx, req); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("%s: %.0f allocations per request", tt.name, allocs)
		if allocs > tt.maxAllocs {
			t.Errorf("%s: %.0f allocations per request, want at most %.0f", tt.name, allocs, tt.maxAllocs)
		}
	}
}
