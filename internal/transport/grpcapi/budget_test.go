package grpcapi

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

func bytesRequest(n int) *inference.ModelInferRequest {
	return &inference.ModelInferRequest{ModelName: "simple", Inputs: []*inference.ModelInferRequest_InferInputTensor{{
		Name: "INPUT0", Datatype: "BYTES", Shape: []int64{int64(n)},
		Contents: &inference.InferTensorContents{BytesContents: make([][]byte, n)},
	}}}
}

func TestDecodeCost(t *testing.T) {
	lim := guard.Limits{}.WithDefaults()
	for _, c := range []struct {
		name    string
		req     *inference.ModelInferRequest
		atLeast int64
	}{
		{"empty bytes_contents", bytesRequest(1000), 1000 * (2*24 + 4)},
		{"int64 varints", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{
			Name: "x", Contents: &inference.InferTensorContents{Int64Contents: make([]int64, 1000)}}}}, 1000 * 16},
		{"fp32", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{
			Name: "x", Contents: &inference.InferTensorContents{Fp32Contents: make([]float32, 1000)}}}}, 1000 * 8},
		{"raw contents cost nothing more", &inference.ModelInferRequest{RawInputContents: [][]byte{make([]byte, 1000)}}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := proto.Marshal(c.req)
			if err != nil {
				t.Fatal(err)
			}
			cost, err := decodeCost(b, lim)
			if err != nil {
				t.Fatal(err)
			}
			if cost < c.atLeast || cost > 2*c.atLeast+64 {
				t.Fatalf("cost %d of a %d-byte message, want %d to %d", cost, len(b), c.atLeast, 2*c.atLeast+64)
			}
		})
	}
	t.Run("element count over the limit before decoding", func(t *testing.T) {
		b, err := proto.Marshal(bytesRequest(1001))
		if err != nil {
			t.Fatal(err)
		}
		_, err = decodeCost(b, guard.Limits{MaxTensorElements: 1000}.WithDefaults())
		if err == nil || !strings.Contains(err.Error(), guard.LimitTensorElements) {
			t.Fatalf("err = %v, want one naming %s", err, guard.LimitTensorElements)
		}
	})
}

// waitInUse waits until the budget holds want bytes.
func waitInUse(t *testing.T, b *guard.Budget, want int64) {
	t.Helper()
	deadline := time.After(defaultTestTimeout)
	for b.InUse() != want {
		select {
		case <-deadline:
			t.Fatalf("budget holds %d bytes, want %d", b.InUse(), want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestBudget: a request whose bytes and decoding do not fit the budget is
// RESOURCE_EXHAUSTED with a retry pushback and a message naming the flag,
// before it is decoded; one that fits is served and refunded.
func TestBudget(t *testing.T) {
	budget := guard.NewBudget(1 << 20)
	e := newEnv(t, Config{Budget: budget})
	var trailer metadata.MD
	_, err := e.client.ModelInfer(testCtx(t), bytesRequest(100_000), grpc.Trailer(&trailer))
	st := wantCode(t, err, codes.ResourceExhausted)
	if !strings.Contains(st.Message(), guard.LimitInflightBytes) || len(trailer.Get(retryPushback)) == 0 {
		t.Fatalf("refusal %q, trailer %v", st.Message(), trailer)
	}
	if budget.Rejected() != 1 {
		t.Fatalf("%d refusals counted, want 1", budget.Rejected())
	}
	waitInUse(t, budget, 0)
	if _, err := e.client.ModelInfer(testCtx(t), simpleRequest("ok")); err != nil {
		t.Fatal(err)
	}
	waitInUse(t, budget, 0)
}
