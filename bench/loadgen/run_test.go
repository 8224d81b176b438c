package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	inference "github.com/onnxserve/onnxserve/proto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's process-wide Date refresher, and its idle-worker and
		// idle-connection cleaners, which notice a stop only when they
		// next wake (up to 10s) and then exit on their own.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	)
}

// arith computes simple's answer; every corruptEvery-th call (0: never)
// gets a wrong first element, as a server that mixed up rows would send.
type arith struct {
	calls        atomic.Int64
	corruptEvery int64
}

func (a *arith) answer(x, y []byte) (sum, diff []byte) {
	sum, diff = make([]byte, len(x)), make([]byte, len(x))
	for i := 0; i+4 <= len(x); i += 4 {
		p, q := int32(binary.LittleEndian.Uint32(x[i:])), int32(binary.LittleEndian.Uint32(y[i:]))
		binary.LittleEndian.PutUint32(sum[i:], uint32(p+q))
		binary.LittleEndian.PutUint32(diff[i:], uint32(p-q))
	}
	if n := a.calls.Add(1); a.corruptEvery > 0 && n%a.corruptEvery == 0 {
		sum[0]++
	}
	return sum, diff
}

type fakeGRPC struct {
	inference.UnimplementedGRPCInferenceServiceServer
	a *arith
}

func (f *fakeGRPC) ModelInfer(_ context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	sum, diff := f.a.answer(req.RawInputContents[0], req.RawInputContents[1])
	return &inference.ModelInferResponse{
		ModelName: req.ModelName,
		Outputs: []*inference.ModelInferResponse_InferOutputTensor{
			{Name: "OUTPUT0", Datatype: "INT32", Shape: []int64{1, 16}},
			{Name: "OUTPUT1", Datatype: "INT32", Shape: []int64{1, 16}},
		},
		RawOutputContents: [][]byte{sum, diff},
	}, nil
}

func startGRPC(t *testing.T, a *arith) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	inference.RegisterGRPCInferenceServiceServer(s, &fakeGRPC{a: a})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

// fakeHTTP answers simple over the v2 JSON form and the binary extension.
func startHTTP(t *testing.T, a *arith) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		body := ctx.PostBody()
		var x, y []byte
		hl := string(ctx.Request.Header.Peek("Inference-Header-Content-Length"))
		if hl != "" {
			n, _ := strconv.Atoi(hl)
			x, y = body[n:n+64], body[n+64:n+128]
		} else {
			var req struct {
				Inputs []struct {
					Data []float64 `json:"data"`
				} `json:"inputs"`
			}
			if err := json.Unmarshal(body, &req); err != nil || len(req.Inputs) != 2 {
				ctx.SetStatusCode(fasthttp.StatusBadRequest)
				ctx.SetBodyString(`{"error":"bad request"}`)
				return
			}
			x, y = rawFromJSON("INT32", req.Inputs[0].Data), rawFromJSON("INT32", req.Inputs[1].Data)
		}
		sum, diff := a.answer(x, y)
		if hl != "" {
			hdr := `{"outputs":[{"name":"OUTPUT0","datatype":"INT32","shape":[1,16],"parameters":{"binary_data_size":64}},` +
				`{"name":"OUTPUT1","datatype":"INT32","shape":[1,16],"parameters":{"binary_data_size":64}}]}`
			ctx.Response.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(hdr)))
			ctx.SetBody(append(append([]byte(hdr), sum...), diff...))
			return
		}
		ctx.SetBodyString(`{"outputs":[{"name":"OUTPUT0","datatype":"INT32","shape":[1,16],"data":` + ints(sum) +
			`},{"name":"OUTPUT1","datatype":"INT32","shape":[1,16],"data":` + ints(diff) + `}]}`)
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(); <-done })
	return ln.Addr().String()
}

func ints(b []byte) string {
	parts := make([]string, 0, len(b)/4)
	for i := 0; i+4 <= len(b); i += 4 {
		parts = append(parts, strconv.Itoa(int(int32(binary.LittleEndian.Uint32(b[i:])))))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func TestRunCountsAnswersAndErrors(t *testing.T) {
	tests := []struct {
		name, protocol string
		corruptEvery   int64
		rate           float64
	}{
		{name: "grpc correct", protocol: protoGRPC},
		{name: "grpc corrupted", protocol: protoGRPC, corruptEvery: 5},
		{name: "http json corrupted", protocol: protoHTTPJSON, corruptEvery: 5},
		{name: "http binary corrupted", protocol: protoHTTPBinary, corruptEvery: 5},
		{name: "grpc open loop", protocol: protoGRPC, rate: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &arith{corruptEvery: tt.corruptEvery}
			addr := ""
			if tt.protocol == protoGRPC {
				addr = startGRPC(t, a)
			} else {
				addr = startHTTP(t, a)
			}
			o := &options{protocol: tt.protocol, addr: addr, model: "simple", workload: "simple", concurrency: 4, conns: 1,
				rate: tt.rate, warmup: 50 * time.Millisecond, duration: 400 * time.Millisecond, events: true, seed: 1}
			var events strings.Builder
			res, err := run(context.Background(), o, &events)
			if err != nil {
				t.Fatal(err)
			}
			if got := events.String(); got != "{\"event\":\"start\"}\n{\"event\":\"end\"}\n" {
				t.Fatalf("events %q", got)
			}
			if res.Requests == 0 {
				t.Fatalf("no answers counted: %+v", res)
			}
			if tt.corruptEvery == 0 && res.Errors != 0 {
				t.Fatalf("%d errors from a correct server: %v", res.Errors, res.ErrorSamples)
			}
			if tt.corruptEvery > 0 {
				if res.Errors == 0 {
					t.Fatalf("corrupted answers not counted: %+v", res)
				}
				for k := range res.ErrorSamples {
					if !strings.HasPrefix(k, "verify") {
						t.Fatalf("error %q is not a failed check", k)
					}
				}
			}
			if res.LatencyMs.P50 <= 0 || res.LatencyMs.P99 < res.LatencyMs.P50 || res.LatencyMs.Max < res.LatencyMs.P99 {
				t.Fatalf("latency summary out of order: %+v", res.LatencyMs)
			}
			if tt.rate > 0 {
				// 500/s over 0.4s: about 200 answers, never far more.
				if res.Requests > 260 || res.Requests < 100 {
					t.Fatalf("open loop at %g/s answered %d requests in %gs", tt.rate, res.Requests, res.Seconds)
				}
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	addr := startGRPC(t, &arith{})
	ctx, cancel := context.WithCancel(context.Background())
	o := &options{protocol: protoGRPC, addr: addr, model: "simple", workload: "simple", concurrency: 2, conns: 1,
		warmup: time.Hour, duration: time.Hour, seed: 1}
	done := make(chan error, 1)
	go func() {
		_, err := run(ctx, o, io.Discard)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled run reported success")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
}
