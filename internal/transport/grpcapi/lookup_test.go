package grpcapi

import (
	"context"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	inference "github.com/onnxserve/onnxserve/proto"
)

// countingInference is the serving core's request path as a fake that
// counts how often the front end reaches it. Its answer is canned.
type countingInference struct{ calls atomic.Int64 }

func (c *countingInference) Infer(_ context.Context, req *serving.Request) (*serving.Response, error) {
	c.calls.Add(1)
	out := tensor.Tensor{Name: "OUTPUT0", DataType: tensor.Int32, Shape: []int64{1, 16}, Data: make([]byte, 64)}
	return &serving.Response{Model: "simple", Version: "1", ID: req.ID, Outputs: []tensor.Tensor{out}}, nil
}

func (c *countingInference) Refuse(_ *serving.Request, err error) error {
	c.calls.Add(1)
	return err
}

// TestOneServingCallPerInference shows each inference reaches the serving
// core exactly once, succeed or fail, and nothing else of it: the health,
// metadata and management parts are absent, so any call to them would
// panic and fail the request.
func TestOneServingCallPerInference(t *testing.T) {
	inf := &countingInference{}
	svc := &service{inf: inf, cfg: Config{}.withDefaults(), log: zap.NewNop()}
	badTimeout := simpleRequest("t")
	badTimeout.Parameters = map[string]*inference.InferParameter{"timeout": {ParameterChoice: &inference.InferParameter_StringParam{StringParam: "1s"}}}
	noModel := simpleRequest("m")
	noModel.ModelName = ""
	tests := []struct {
		name string
		req  *inference.ModelInferRequest
		ok   bool
	}{
		{"success", simpleRequest("a"), true},
		{"bad parameter", badTimeout, false},
		{"no model name", noModel, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := inf.calls.Load()
			_, err := svc.ModelInfer(context.Background(), tt.req)
			if (err == nil) != tt.ok {
				t.Fatalf("ModelInfer: %v", err)
			}
			if n := inf.calls.Load() - before; n != 1 {
				t.Errorf("the serving core was reached %d times, want once", n)
			}
		})
	}
}
