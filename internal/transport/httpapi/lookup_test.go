package httpapi

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// countingInference is the serving core's request path as a fake that
// counts how often the front end reaches it. Its answer is canned.
type countingInference struct {
	calls atomic.Int64
	resp  serving.Response
}

func (c *countingInference) Infer(_ context.Context, req *serving.Request) (*serving.Response, error) {
	c.calls.Add(1)
	r := c.resp
	r.ID = req.ID
	return &r, nil
}

func (c *countingInference) Refuse(_ *serving.Request, err error) error {
	c.calls.Add(1)
	return err
}

func newCountingInference() *countingInference {
	out := tensor.Tensor{Name: "OUTPUT0", DataType: tensor.Int32, Shape: []int64{1, 16}, Data: make([]byte, 64)}
	return &countingInference{resp: serving.Response{Model: "simple", Version: "1", Outputs: []tensor.Tensor{out, out}}}
}

// inferCtx builds the fasthttp context of one infer call.
func inferCtx(path, body string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(http.MethodPost)
	ctx.Request.SetRequestURI(path)
	ctx.Request.SetBodyString(body)
	return &ctx
}

// TestOneServingCallPerInference shows each inference reaches the serving
// core exactly once, succeed or fail, and nothing else of it: the health,
// metadata and management parts are absent, so any call to them would
// fail the request.
func TestOneServingCallPerInference(t *testing.T) {
	inf := newCountingInference()
	s := New(Backends{Inference: inf}, Config{}, zap.NewNop())
	tests := []struct {
		name, path, body string
		code             int
	}{
		{"success", "/v2/models/simple/infer", simpleRequest(""), http.StatusOK},
		{"sticky key header", "/v2/models/simple/infer", simpleRequest(`"parameters":{"x-routing-key":"u"},`), http.StatusOK},
		{"bad body", "/v2/models/simple/versions/1/infer", `{"inputs":`, http.StatusBadRequest},
		{"bad timeout", "/v2/models/simple/infer", simpleRequest(`"parameters":{"timeout":-1},`), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := inf.calls.Load()
			ctx := inferCtx(tt.path, tt.body)
			s.handle(ctx)
			if ctx.Response.StatusCode() != tt.code {
				t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if n := inf.calls.Load() - before; n != 1 {
				t.Errorf("the serving core was reached %d times, want once", n)
			}
		})
	}
}
