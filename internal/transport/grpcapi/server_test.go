package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
	inference "github.com/onnxserve/onnxserve/proto"
)

func TestServerRPCs(t *testing.T) {
	e := newEnv(t, Config{Version: "1.2.3"})
	ctx := testCtx(t)

	live, err := e.client.ServerLive(ctx, &inference.ServerLiveRequest{})
	if err != nil || !live.GetLive() {
		t.Errorf("ServerLive = %v, %v; want live", live, err)
	}
	ready, err := e.client.ServerReady(ctx, &inference.ServerReadyRequest{})
	if err != nil || !ready.GetReady() {
		t.Errorf("ServerReady = %v, %v; want ready", ready, err)
	}
	md, err := e.client.ServerMetadata(ctx, &inference.ServerMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if md.GetName() != "onnxserve" || md.GetVersion() != "1.2.3" || !slices.Equal(md.GetExtensions(), DefaultExtensions) {
		t.Errorf("ServerMetadata = %v", md)
	}
	_, err = e.client.ModelStatistics(ctx, &inference.ModelStatisticsRequest{})
	wantCode(t, err, codes.InvalidArgument)
}

func TestModelStatistics(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := testCtx(t)
	for range 3 {
		if _, err := e.client.ModelInfer(ctx, simpleRequest("s")); err != nil {
			t.Fatal(err)
		}
	}
	st, err := e.client.ModelStatistics(ctx, &inference.ModelStatisticsRequest{Name: "simple", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetModelStats()) != 1 {
		t.Fatalf("stats %v", st)
	}
	ms := st.GetModelStats()[0]
	if ms.GetName() != "simple" || ms.GetVersion() != "1" || ms.GetInferenceStats().GetSuccess().GetCount() == 0 ||
		ms.GetExecutionCount() == 0 || ms.GetInferenceCount() < ms.GetExecutionCount() || ms.GetLastInference() == 0 {
		t.Errorf("statistics %v", ms)
	}
	_, err = e.client.ModelStatistics(ctx, &inference.ModelStatisticsRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound)
}

func TestModelReady(t *testing.T) {
	e := newEnv(t, Config{})
	tests := []struct {
		name, model, version string
		want                 bool
		code                 codes.Code
	}{
		{"any version", "simple", "", true, codes.OK},
		{"version 1", "simple", "1", true, codes.OK},
		{"failed to load", "broken", "", false, codes.OK},
		{"unknown model", "nope", "", false, codes.NotFound},
		{"unknown version", "simple", "9", false, codes.NotFound},
		{"no name", "", "", false, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client.ModelReady(testCtx(t), &inference.ModelReadyRequest{Name: tt.model, Version: tt.version})
			if tt.code != codes.OK {
				wantCode(t, err, tt.code)
				return
			}
			if err != nil || resp.GetReady() != tt.want {
				t.Fatalf("ModelReady = %v, %v; want ready=%v", resp, err, tt.want)
			}
		})
	}
}

func TestModelMetadata(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := testCtx(t)
	md, err := e.client.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "simple"})
	if err != nil {
		t.Fatal(err)
	}
	if md.GetName() != "simple" || md.GetPlatform() != "onnxruntime_onnx" || !slices.Equal(md.GetVersions(), []string{"1"}) {
		t.Errorf("metadata = %v", md)
	}
	check := func(kind string, got []*inference.ModelMetadataResponse_TensorMetadata, names ...string) {
		if len(got) != len(names) {
			t.Fatalf("%s: %d tensors, want %d", kind, len(got), len(names))
		}
		for i, n := range names {
			if got[i].GetName() != n || got[i].GetDatatype() != "INT32" || !slices.Equal(got[i].GetShape(), []int64{-1, 16}) {
				t.Errorf("%s %d = %v, want %s INT32 [-1,16]", kind, i, got[i], n)
			}
		}
	}
	check("inputs", md.GetInputs(), "INPUT0", "INPUT1")
	check("outputs", md.GetOutputs(), "OUTPUT0", "OUTPUT1")

	md, err = e.client.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: identityName(tensor.Bytes), Version: "1"})
	if err != nil || md.GetInputs()[0].GetDatatype() != "BYTES" {
		t.Errorf("BYTES metadata = %v, %v", md, err)
	}

	errs := []struct {
		name, model string
		code        codes.Code
	}{
		{"unknown", "nope", codes.NotFound},
		{"failed to load", "broken", codes.Unavailable},
		{"no name", "", codes.InvalidArgument},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.ModelMetadata(testCtx(t), &inference.ModelMetadataRequest{Name: tt.model})
			wantCode(t, err, tt.code)
		})
	}
}

func TestModelInferSimple(t *testing.T) {
	e := newEnv(t, Config{})
	wantSum, wantDiff := make([]int32, 16), make([]int32, 16)
	for i := range wantSum {
		wantSum[i], wantDiff[i] = int32(i)+1, int32(i)-1
	}
	typed := simpleRequest("typed-1")
	raw := simpleRequest("raw-1")
	for i, in := range raw.Inputs {
		raw.RawInputContents = append(raw.RawInputContents, le32(func() []uint32 {
			v := make([]uint32, 16)
			for j := range v {
				v[j] = uint32(in.Contents.IntContents[j])
			}
			return v
		}()...))
		raw.Inputs[i].Contents = nil
	}
	for name, req := range map[string]*inference.ModelInferRequest{"typed contents": typed, "raw contents": raw} {
		t.Run(name, func(t *testing.T) {
			resp, err := e.client.ModelInfer(testCtx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetId() != req.GetId() || resp.GetModelName() != "simple" || resp.GetModelVersion() != "1" {
				t.Errorf("response header = %q %q %q", resp.GetId(), resp.GetModelName(), resp.GetModelVersion())
			}
			if len(resp.GetOutputs()) != 2 || len(resp.GetRawOutputContents()) != 2 {
				t.Fatalf("got %d outputs and %d raw contents, want 2 and 2", len(resp.GetOutputs()), len(resp.GetRawOutputContents()))
			}
			for i, want := range [][]int32{wantSum, wantDiff} {
				out := resp.GetOutputs()[i]
				if out.GetName() != []string{"OUTPUT0", "OUTPUT1"}[i] || out.GetDatatype() != "INT32" || !slices.Equal(out.GetShape(), []int64{1, 16}) {
					t.Errorf("output %d = %v", i, out)
				}
				if out.GetContents() != nil {
					t.Errorf("output %d carries typed contents; outputs must be raw", i)
				}
				if got := int32s(resp.GetRawOutputContents()[i]); !slices.Equal(got, want) {
					t.Errorf("output %d = %v, want %v", i, got, want)
				}
			}
		})
	}

	t.Run("requested outputs in requested order", func(t *testing.T) {
		req := simpleRequest("")
		req.Outputs = []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "OUTPUT1"}, {Name: "OUTPUT0"}}
		resp, err := e.client.ModelInfer(testCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetOutputs()) != 2 || resp.GetOutputs()[0].GetName() != "OUTPUT1" || resp.GetOutputs()[1].GetName() != "OUTPUT0" {
			t.Fatalf("outputs = %v", resp.GetOutputs())
		}
		if got := int32s(resp.GetRawOutputContents()[0]); !slices.Equal(got, wantDiff) {
			t.Errorf("OUTPUT1 = %v, want %v", got, wantDiff)
		}
		req.Outputs = req.Outputs[:1]
		resp, err = e.client.ModelInfer(testCtx(t), req)
		if err != nil || len(resp.GetOutputs()) != 1 || len(resp.GetRawOutputContents()) != 1 {
			t.Fatalf("one requested output: %v, %v", resp, err)
		}
	})
}

func TestModelInferAllDataTypes(t *testing.T) {
	e := newEnv(t, Config{})
	for _, s := range samples() {
		for _, enc := range []string{"typed", "raw"} {
			t.Run(s.dt.String()+"/"+enc, func(t *testing.T) {
				in := &inference.ModelInferRequest_InferInputTensor{Name: "INPUT0", Datatype: s.dt.String(), Shape: []int64{3}}
				req := &inference.ModelInferRequest{ModelName: identityName(s.dt), Inputs: []*inference.ModelInferRequest_InferInputTensor{in}}
				if enc == "typed" {
					in.Contents = s.contents
				} else {
					req.RawInputContents = [][]byte{s.raw}
				}
				resp, err := e.client.ModelInfer(testCtx(t), req)
				if err != nil {
					t.Fatal(err)
				}
				out := resp.GetOutputs()[0]
				if out.GetDatatype() != s.dt.String() || !slices.Equal(out.GetShape(), []int64{3}) {
					t.Errorf("output = %v", out)
				}
				if got := resp.GetRawOutputContents()[0]; !bytes.Equal(got, s.raw) {
					t.Errorf("raw output = %x, want %x", got, s.raw)
				}
			})
		}
	}
}

func TestModelInferErrors(t *testing.T) {
	e := newEnv(t, Config{})
	withSimple := func(f func(r *inference.ModelInferRequest)) *inference.ModelInferRequest {
		r := simpleRequest("")
		f(r)
		return r
	}
	tests := []struct {
		name     string
		req      *inference.ModelInferRequest
		code     codes.Code
		httpCode int
		msg      string // substring of the status message
	}{
		{"unknown model", &inference.ModelInferRequest{ModelName: "nope"}, codes.NotFound, 404, `model "nope"`},
		{"unknown version", withSimple(func(r *inference.ModelInferRequest) { r.ModelVersion = "7" }), codes.NotFound, 404, "version"},
		{"no model name", &inference.ModelInferRequest{}, codes.InvalidArgument, 400, "model_name"},
		{"element count", withSimple(func(r *inference.ModelInferRequest) {
			r.Inputs[0].Contents.IntContents = r.Inputs[0].Contents.IntContents[:15]
		}), codes.InvalidArgument, 400, `input "INPUT0": shape [1,16] needs 16 elements, int_contents has 15`},
		{"wrong contents field", withSimple(func(r *inference.ModelInferRequest) {
			r.Inputs[1].Contents = &inference.InferTensorContents{Fp32Contents: make([]float32, 16)}
		}), codes.InvalidArgument, 400, `input "INPUT1": datatype INT32 takes contents.int_contents, but contents.fp32_contents is set`},
		{"datatype the model does not take", withSimple(func(r *inference.ModelInferRequest) {
			r.Inputs[1].Datatype = "FP32"
			r.Inputs[1].Contents = &inference.InferTensorContents{Fp32Contents: make([]float32, 16)}
		}), codes.InvalidArgument, 400, `input "INPUT1"`},
		{"missing input", withSimple(func(r *inference.ModelInferRequest) { r.Inputs = r.Inputs[:1] }), codes.InvalidArgument, 400, `missing input "INPUT1"`},
		{"unknown output", withSimple(func(r *inference.ModelInferRequest) {
			r.Outputs = []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "OUTPUT9"}}
		}), codes.InvalidArgument, 400, `unknown output "OUTPUT9"`},
		{"classification", withSimple(func(r *inference.ModelInferRequest) {
			r.Outputs = []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "OUTPUT0", Parameters: map[string]*inference.InferParameter{
				"classification": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 1}}}}}
		}), codes.InvalidArgument, 400, "classification"},
		{"negative timeout", withSimple(func(r *inference.ModelInferRequest) {
			r.Parameters = map[string]*inference.InferParameter{"timeout": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: -1}}}
		}), codes.InvalidArgument, 400, `parameter "timeout"`},
		{"timeout of the wrong type", withSimple(func(r *inference.ModelInferRequest) {
			r.Parameters = map[string]*inference.InferParameter{"timeout": {ParameterChoice: &inference.InferParameter_StringParam{StringParam: "1s"}}}
		}), codes.InvalidArgument, 400, `parameter "timeout"`},
		{"routing key of the wrong type", withSimple(func(r *inference.ModelInferRequest) {
			r.Parameters = map[string]*inference.InferParameter{"routing_key": {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: true}}}
		}), codes.InvalidArgument, 400, `parameter "routing_key"`},
		{"model failed to load", &inference.ModelInferRequest{ModelName: "broken"}, codes.Unavailable, 503, `model "broken"`},
		{"runtime failure", &inference.ModelInferRequest{
			ModelName:        "fail",
			Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "INPUT0", Datatype: "FP32", Shape: []int64{1}}},
			RawInputContents: [][]byte{le32(0)},
		}, codes.Internal, 500, errRuntime.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.ModelInfer(testCtx(t), tt.req)
			st := wantCode(t, err, tt.code)
			if !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("message %q does not contain %q", st.Message(), tt.msg)
			}
			o := e.nextObservation(t)
			// A request that reached a version is observed under it; one
			// that failed before routing keeps the version it named, when
			// the model has it. Labels never name what the server lacks.
			wantModel, wantVersion := tt.req.GetModelName(), tt.req.GetModelVersion()
			if _, err := e.serving.ModelReady(wantModel, ""); err != nil {
				wantModel, wantVersion = "", ""
			} else if _, err := e.serving.ModelReady(wantModel, wantVersion); errors.Is(err, serving.ErrVersionNotFound) {
				wantVersion = ""
			}
			if wantVersion == "" && o.version != "" {
				md, err := e.serving.ModelMetadata(tt.req.GetModelName(), "")
				if err != nil || md.Versions[len(md.Versions)-1] != o.version {
					t.Errorf("observed version %q, want the newest ready version (%v, %v)", o.version, md.Versions, err)
				}
				wantVersion = o.version
			}
			if o.code != tt.httpCode || o.model != wantModel || o.version != wantVersion {
				t.Errorf("observed %+v, want model %q version %q code %d", o, wantModel, wantVersion, tt.httpCode)
			}
		})
	}
}

func TestMessageSizeLimit(t *testing.T) {
	e := newEnv(t, Config{MaxRecvMsgSize: 1024})
	req := &inference.ModelInferRequest{
		ModelName:        identityName(tensor.Uint8),
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "INPUT0", Datatype: "UINT8", Shape: []int64{4096}}},
		RawInputContents: [][]byte{make([]byte, 4096)},
	}
	_, err := e.client.ModelInfer(testCtx(t), req)
	wantCode(t, err, codes.ResourceExhausted)
}

func TestObserveSuccess(t *testing.T) {
	e := newEnv(t, Config{})
	if _, err := e.client.ModelInfer(testCtx(t), simpleRequest("a")); err != nil {
		t.Fatal(err)
	}
	o := e.nextObservation(t)
	if o.model != "simple" || o.version != "1" || o.code != 200 || o.d <= 0 {
		t.Errorf("observed %+v, want simple version 1 code 200 with a duration", o)
	}
	e.noObservation(t)
}

func TestQueueFull(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := testCtx(t)
	first := make(chan error, 1)
	go func() {
		_, err := e.client.ModelInfer(ctx, gateRequest("gate", 1))
		first <- err
	}()
	waitStarted(t, e.gate, 1)

	// The one instance is busy and the queue holds one request: of four
	// more, at least one is refused at once.
	const n = 4
	results := make(chan error, n)
	for v := int32(2); v < 2+n; v++ {
		e.gate.open(v)
		go func() {
			_, err := e.client.ModelInfer(ctx, gateRequest("gate", v))
			results <- err
		}()
	}
	var refused, ok int
	select {
	case err := <-results:
		st := wantCode(t, err, codes.ResourceExhausted)
		if !strings.Contains(st.Message(), "queue full") {
			t.Errorf("message %q does not say the queue is full", st.Message())
		}
		refused++
	case <-time.After(defaultTestTimeout):
		t.Fatal("no request was refused while the queue was full")
	}
	e.gate.open(1)
	if err := <-first; err != nil {
		t.Fatalf("the running request failed: %v", err)
	}
	for range n - 1 {
		err := <-results
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			refused++
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok == 0 || refused+ok != n {
		t.Errorf("%d refused, %d served of %d; the queued request must be served", refused, ok, n)
	}
}

func TestDeadlineWhileQueued(t *testing.T) {
	tests := []struct {
		name string
		call func(e *env, req *inference.ModelInferRequest) error
	}{
		{"grpc deadline", func(e *env, req *inference.ModelInferRequest) error {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := e.client.ModelInfer(ctx, req)
			return err
		}},
		{"timeout parameter", func(e *env, req *inference.ModelInferRequest) error {
			req.Parameters = map[string]*inference.InferParameter{"timeout": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 100_000}}}
			_, err := e.client.ModelInfer(context.Background(), req)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			first := make(chan error, 1)
			go func() {
				_, err := e.client.ModelInfer(testCtx(t), gateRequest("gate", 1))
				first <- err
			}()
			waitStarted(t, e.gate, 1)
			e.gate.open(2) // were the expired request to run, it would finish and be recorded
			err := tt.call(e, gateRequest("gate", 2))
			wantCode(t, err, codes.DeadlineExceeded)
			if o := e.nextObservation(t); o.code != 504 {
				t.Errorf("observed %+v, want code 504", o)
			}

			e.gate.open(1)
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			e.gate.open(3)
			if _, err := e.client.ModelInfer(testCtx(t), gateRequest("gate", 3)); err != nil {
				t.Fatal(err)
			}
			if got := e.gate.finished(); !slices.Equal(got, []int32{1, 3}) {
				t.Errorf("the model ran %v, want [1 3]: the expired request must never run", got)
			}
		})
	}
}

func TestCancelledClient(t *testing.T) {
	e := newEnv(t, Config{})
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		_, err := e.client.ModelInfer(ctx, gateRequest("gate", 1))
		done <- err
	}()
	waitStarted(t, e.gate, 1)
	cancel()
	wantCode(t, <-done, codes.Canceled)
	if o := e.nextObservation(t); o.code != 499 {
		t.Errorf("observed %+v, want code 499 for a client that went away", o)
	}
}

func TestModelStreamInferOrderAndErrors(t *testing.T) {
	e := newEnv(t, Config{StreamDepth: 8})
	stream, err := e.client.ModelStreamInfer(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	bad := map[int]string{
		10: `model "nope"`,
		25: `input "INPUT0": shape [1,16] needs 16 elements, int_contents has 3`,
	}
	sendErr := make(chan error, 1)
	go func() {
		for i := range n {
			req := simpleRequest(fmt.Sprintf("req-%d", i))
			switch i {
			case 10:
				req.ModelName = "nope"
			case 25:
				req.Inputs[0].Contents.IntContents = req.Inputs[0].Contents.IntContents[:3]
			}
			if err := stream.Send(req); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	for i := range n {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		wantID := fmt.Sprintf("req-%d", i)
		if got := resp.GetInferResponse().GetId(); got != wantID {
			t.Fatalf("answer %d has id %q, want %q: answers out of order", i, got, wantID)
		}
		if msg, isBad := bad[i]; isBad {
			if !strings.Contains(resp.GetErrorMessage(), msg) {
				t.Errorf("answer %d: error %q does not contain %q", i, resp.GetErrorMessage(), msg)
			}
			continue
		}
		if resp.GetErrorMessage() != "" {
			t.Fatalf("answer %d: unexpected error %q", i, resp.GetErrorMessage())
		}
		if got := int32s(resp.GetInferResponse().GetRawOutputContents()[0]); got[15] != 16 {
			t.Errorf("answer %d: OUTPUT0 = %v", i, got)
		}
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last answer: %v, want io.EOF", err)
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	byCode := map[int]int{}
	for range n {
		byCode[e.nextObservation(t).code]++
	}
	if byCode[200] != n-2 || byCode[404] != 1 || byCode[400] != 1 {
		t.Errorf("observed codes %v, want %d×200, 1×404, 1×400", byCode, n-2)
	}
	e.noObservation(t)
}

func TestModelStreamInferAnswersInRequestOrder(t *testing.T) {
	e := newEnv(t, Config{StreamDepth: 8})
	stream, err := e.client.ModelStreamInfer(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	for v := int32(0); v < n; v++ {
		req := gateRequest("gate8", v)
		req.Id = string(rune('a' + v))
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	// All eight run at once; they finish last first.
	started := map[int32]bool{}
	for range n {
		select {
		case v := <-e.gate8.started:
			started[v] = true
		case <-time.After(defaultTestTimeout):
			t.Fatalf("only %d of %d requests started; the stream must run them concurrently", len(started), n)
		}
	}
	for v := int32(n - 1); v >= 0; v-- {
		e.gate8.open(v)
	}
	for v := int32(0); v < n; v++ {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetErrorMessage() != "" || resp.GetInferResponse().GetId() != string(rune('a'+v)) {
			t.Fatalf("answer %d = %v, want id %q", v, resp, string(rune('a'+v)))
		}
		if got := int32s(resp.GetInferResponse().GetRawOutputContents()[0]); got[0] != v {
			t.Fatalf("answer %d carries value %d", v, got[0])
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after CloseSend: %v, want io.EOF", err)
	}
}

func TestStopEndsIdleStream(t *testing.T) {
	e := newEnv(t, Config{})
	stream, err := e.client.ModelStreamInfer(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(simpleRequest("1")); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetErrorMessage() != "" {
		t.Fatalf("first answer: %v, %v", resp, err)
	}
	stopped := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e.server.Stop(ctx)
		close(stopped)
	}()
	_, err = stream.Recv()
	wantCode(t, err, codes.Unavailable)
	select {
	case <-stopped:
	case <-time.After(defaultTestTimeout):
		t.Fatal("Stop waited on an idle stream")
	}
}

func TestStopFinishesStreamRequestsInFlight(t *testing.T) {
	e := newEnv(t, Config{})
	stream, err := e.client.ModelStreamInfer(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(gateRequest("gate", 1)); err != nil {
		t.Fatal(err)
	}
	waitStarted(t, e.gate, 1)
	stopped := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e.server.Stop(ctx)
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("Stop returned while a stream request was running")
	case <-time.After(defaultTestShortTimeout):
	}
	e.gate.open(1)
	resp, err := stream.Recv()
	if err != nil || resp.GetErrorMessage() != "" {
		t.Fatalf("the request in flight was not answered: %v, %v", resp, err)
	}
	_, err = stream.Recv()
	wantCode(t, err, codes.Unavailable)
	select {
	case <-stopped:
	case <-time.After(defaultTestTimeout):
		t.Fatal("Stop did not return")
	}
}

func TestStopFallsBackWhenContextEnds(t *testing.T) {
	e := newEnv(t, Config{})
	done := make(chan error, 1)
	go func() {
		_, err := e.client.ModelInfer(testCtx(t), gateRequest("gate", 1))
		done <- err
	}()
	waitStarted(t, e.gate, 1)
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestShortTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		e.server.Stop(ctx)
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(defaultTestTimeout):
		t.Fatal("Stop did not give up on a stuck call when its context ended")
	}
	if err := <-done; err == nil {
		t.Fatal("the stuck call succeeded; it should have been cut off")
	}
}

func TestRepositoryRPCs(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := testCtx(t)
	idx, err := e.client.RepositoryIndex(ctx, &inference.RepositoryIndexRequest{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*inference.RepositoryIndexResponse_ModelIndex{}
	for _, m := range idx.GetModels() {
		byName[m.GetName()] = m
	}
	if len(byName) != len(testModels()) {
		t.Errorf("index lists %d models, want %d: %v", len(byName), len(testModels()), idx.GetModels())
	}
	if m := byName["simple"]; m.GetVersion() != "1" || m.GetState() != "READY" {
		t.Errorf("simple = %v", m)
	}
	if m := byName["broken"]; m.GetState() != "UNAVAILABLE" || !strings.Contains(m.GetReason(), "protobuf parsing failed") {
		t.Errorf("broken = %v, want UNAVAILABLE with the load error", m)
	}
	ready, err := e.client.RepositoryIndex(ctx, &inference.RepositoryIndexRequest{Ready: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ready.GetModels()) != len(testModels())-1 {
		t.Errorf("ready index lists %d models, want %d", len(ready.GetModels()), len(testModels())-1)
	}
	for _, m := range ready.GetModels() {
		if m.GetState() != "READY" {
			t.Errorf("ready index lists %v", m)
		}
	}

	tests := []struct {
		name string
		req  *inference.RepositoryModelLoadRequest
		code codes.Code
	}{
		{"by model_name", &inference.RepositoryModelLoadRequest{ModelName: "simple"}, codes.OK},
		{"name in repository_name", &inference.RepositoryModelLoadRequest{RepositoryName: "simple"}, codes.OK},
		{"config override", &inference.RepositoryModelLoadRequest{ModelName: "simple", Parameters: map[string]*inference.ModelRepositoryParameter{
			"config": {ParameterChoice: &inference.ModelRepositoryParameter_StringParam{StringParam: `{"instances": {"count": 2}}`}}}}, codes.OK},
		{"invalid override", &inference.RepositoryModelLoadRequest{ModelName: "simple", Parameters: map[string]*inference.ModelRepositoryParameter{
			"config": {ParameterChoice: &inference.ModelRepositoryParameter_StringParam{StringParam: "max_batch_size: lots"}}}}, codes.InvalidArgument},
		{"override of the wrong type", &inference.RepositoryModelLoadRequest{ModelName: "simple", Parameters: map[string]*inference.ModelRepositoryParameter{
			"config": {ParameterChoice: &inference.ModelRepositoryParameter_BoolParam{BoolParam: true}}}}, codes.InvalidArgument},
		{"unknown parameter", &inference.RepositoryModelLoadRequest{ModelName: "simple", Parameters: map[string]*inference.ModelRepositoryParameter{
			"file:1/model.onnx": {ParameterChoice: &inference.ModelRepositoryParameter_BytesParam{BytesParam: []byte("x")}}}}, codes.InvalidArgument},
		{"unknown model", &inference.RepositoryModelLoadRequest{ModelName: "nope"}, codes.NotFound},
		{"no name", &inference.RepositoryModelLoadRequest{}, codes.InvalidArgument},
		{"load fails", &inference.RepositoryModelLoadRequest{ModelName: "broken"}, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run("load "+tt.name, func(t *testing.T) {
			_, err := e.client.RepositoryModelLoad(testCtx(t), tt.req)
			if tt.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCode(t, err, tt.code)
		})
	}

	if _, err := e.client.ModelInfer(ctx, simpleRequest("")); err != nil {
		t.Fatalf("simple after reloads: %v", err)
	}
	_, err = e.client.RepositoryModelUnload(ctx, &inference.RepositoryModelUnloadRequest{RepositoryName: "simple"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := e.client.ModelReady(ctx, &inference.ModelReadyRequest{Name: "simple"}); err != nil || r.GetReady() {
		t.Errorf("ModelReady after unload = %v, %v; want not ready", r, err)
	}
	_, err = e.client.ModelInfer(ctx, simpleRequest(""))
	wantCode(t, err, codes.Unavailable)
	_, err = e.client.RepositoryModelUnload(ctx, &inference.RepositoryModelUnloadRequest{ModelName: "nope"})
	wantCode(t, err, codes.NotFound)
	_, err = e.client.RepositoryModelUnload(ctx, &inference.RepositoryModelUnloadRequest{ModelName: "simple", Parameters: map[string]*inference.ModelRepositoryParameter{
		"cascade": {ParameterChoice: &inference.ModelRepositoryParameter_BoolParam{BoolParam: true}}}})
	wantCode(t, err, codes.InvalidArgument)
}

func TestAdminToken(t *testing.T) {
	e := newEnv(t, Config{AdminToken: "s3cret"})
	calls := map[string]func(ctx context.Context) error{
		"index": func(ctx context.Context) error {
			_, err := e.client.RepositoryIndex(ctx, &inference.RepositoryIndexRequest{})
			return err
		},
		"load": func(ctx context.Context) error {
			_, err := e.client.RepositoryModelLoad(ctx, &inference.RepositoryModelLoadRequest{ModelName: "simple"})
			return err
		},
		"unload": func(ctx context.Context) error {
			_, err := e.client.RepositoryModelUnload(ctx, &inference.RepositoryModelUnloadRequest{ModelName: identityName(tensor.FP64)})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			for _, header := range []string{"", "Bearer wrong", "Basic s3cret", "Bearer s3cret2"} {
				ctx := testCtx(t)
				if header != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, "authorization", header)
				}
				st := wantCode(t, call(ctx), codes.Unauthenticated)
				if st.Message() != "unauthenticated" {
					t.Errorf("header %q: message %q gives detail away", header, st.Message())
				}
			}
			ctx := metadata.AppendToOutgoingContext(testCtx(t), "authorization", "Bearer s3cret")
			if err := call(ctx); err != nil {
				t.Fatalf("with the token: %v", err)
			}
		})
	}
	// Inference needs no token.
	if _, err := e.client.ModelInfer(testCtx(t), simpleRequest("")); err != nil {
		t.Fatal(err)
	}
}

func TestAuthorizePeers(t *testing.T) {
	s := &service{cfg: Config{AdminAllowLoopback: true}.withDefaults()}
	tests := []struct {
		name string
		addr net.Addr
		code codes.Code
	}{
		{"loopback", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, codes.OK},
		{"remote", &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 1}, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: tt.addr})
			if got := status.Code(s.authorize(ctx)); got != tt.code {
				t.Fatalf("authorize = %v, want %v", got, tt.code)
			}
		})
	}
	if got := status.Code(s.authorize(context.Background())); got != codes.PermissionDenied {
		t.Errorf("authorize without a peer = %v, want PermissionDenied", got)
	}
}

// TestRequestIDs checks the three sources of a request id: the request's
// id field, else its x-request-id metadata, else one the server makes;
// each comes back in the response, the header metadata and the access
// record, on success and on failure.
func TestRequestIDs(t *testing.T) {
	e := newEnv(t, Config{})
	tests := []struct {
		name, id, md, want string
		model              string
	}{
		{"client id", "from-body", "from-md", "from-body", "simple"},
		{"metadata id", "", "from-md", "from-md", "simple"},
		{"generated", "", "", "", "simple"},
		{"failed, metadata id", "", "bad-one", "bad-one", "nope"},
		{"failed, generated", "", "", "", "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			if tt.md != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, transport.RequestIDHeader, tt.md)
			}
			req := simpleRequest(tt.id)
			req.ModelName = tt.model
			var header metadata.MD
			resp, err := e.client.ModelInfer(ctx, req, grpc.Header(&header))
			got := ""
			if v := header.Get(transport.RequestIDHeader); len(v) == 1 {
				got = v[0]
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("x-request-id %q, want %q", got, tt.want)
			}
			if tt.want == "" {
				if u, perr := uuid.Parse(got); perr != nil || u.Version() != 7 {
					t.Errorf("generated x-request-id %q is not a UUID v7", got)
				}
			}
			if err == nil && resp.GetId() != got {
				t.Errorf("response id %q, header %q", resp.GetId(), got)
			}
			if (err == nil) != (tt.model == "simple") {
				t.Errorf("error %v", err)
			}
			if o := e.nextObservation(t); o.id != got {
				t.Errorf("observed id %q, want %q", o.id, got)
			}
		})
	}
}

// TestRepositoryClosedByDefault: without an admin token and without
// AdminAllowLoopback the repository RPCs refuse loopback callers too (a
// sidecar's), naming the flags that open them; inference stays open.
func TestRepositoryClosedByDefault(t *testing.T) {
	e := newEnv(t, Config{}, closedManagement)
	_, err := e.client.RepositoryIndex(testCtx(t), &inference.RepositoryIndexRequest{})
	st := wantCode(t, err, codes.PermissionDenied)
	for _, flag := range []string{"--admin-token-file", "--admin-allow-loopback"} {
		if !strings.Contains(st.Message(), flag) {
			t.Errorf("message %q does not name %s", st.Message(), flag)
		}
	}
	_, err = e.client.RepositoryModelUnload(testCtx(t), &inference.RepositoryModelUnloadRequest{ModelName: "simple"})
	wantCode(t, err, codes.PermissionDenied)
	if _, err := e.client.ModelInfer(testCtx(t), simpleRequest("")); err != nil {
		t.Fatal(err)
	}
}

func TestRoutingKey(t *testing.T) {
	e := newEnv(t, Config{})
	param := func(p *inference.InferParameter) map[string]*inference.InferParameter {
		return map[string]*inference.InferParameter{"routing_key": p}
	}
	tests := []struct {
		name   string
		md     string
		params map[string]*inference.InferParameter
		want   string
	}{
		{"none", "", nil, ""},
		{"metadata", "user-7", nil, "user-7"},
		{"parameter", "", param(&inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: "user-8"}}), "user-8"},
		{"int parameter", "", param(&inference.InferParameter{ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 42}}), "42"},
		{"metadata wins", "user-7", param(&inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: "user-8"}}), "user-7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			if tt.md != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-routing-key", tt.md)
			}
			req := simpleRequest("")
			req.Parameters = tt.params
			if _, err := e.client.ModelInfer(ctx, req); err != nil {
				t.Fatal(err)
			}
			if got := e.backend.lastRoutingKey(); got != tt.want {
				t.Fatalf("routing key = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPanicRecovery(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := testCtx(t)
	_, err := e.client.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "panic"})
	wantCode(t, err, codes.Internal)
	logged := e.logs.FilterMessage("panic in gRPC handler").All()
	if len(logged) != 1 || !strings.Contains(logged[0].ContextMap()["stack"].(string), "ModelMetadata") {
		t.Fatalf("panic not logged with its stack: %v", logged)
	}

	_, err = e.client.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "panic"})
	wantCode(t, err, codes.Internal)
	if o := e.nextObservation(t); o.code != 500 || o.model != "" {
		t.Errorf("observed %+v, want the panicked request counted as 500", o)
	}

	stream, err := e.client.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []*inference.ModelInferRequest{{ModelName: "panic", Id: "p"}, simpleRequest("after")} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.Recv()
	if err != nil || !strings.Contains(resp.GetErrorMessage(), "internal error") || resp.GetInferResponse().GetId() != "p" {
		t.Fatalf("answer to the panicking request = %v, %v", resp, err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetInferResponse().GetId() != "after" || resp.GetErrorMessage() != "" {
		t.Fatalf("the stream did not go on after a panic: %v, %v", resp, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end = %v", err)
	}

	if _, err := e.client.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "simple"}); err != nil {
		t.Fatalf("server unusable after a panic: %v", err)
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t, Config{HealthWatchInterval: time.Hour})
	health := healthpb.NewHealthClient(e.conn)
	tests := []struct {
		service string
		want    healthpb.HealthCheckResponse_ServingStatus
		code    codes.Code
	}{
		{"", healthpb.HealthCheckResponse_SERVING, codes.OK},
		{"inference.GRPCInferenceService", healthpb.HealthCheckResponse_SERVING, codes.OK},
		{"simple", healthpb.HealthCheckResponse_SERVING, codes.OK},
		{"broken", healthpb.HealthCheckResponse_NOT_SERVING, codes.OK},
		{"nope", 0, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run("check "+tt.service, func(t *testing.T) {
			resp, err := health.Check(testCtx(t), &healthpb.HealthCheckRequest{Service: tt.service})
			if tt.code != codes.OK {
				wantCode(t, err, tt.code)
				return
			}
			if err != nil || resp.GetStatus() != tt.want {
				t.Fatalf("Check = %v, %v; want %v", resp, err, tt.want)
			}
		})
	}

	list, err := health.List(testCtx(t), &healthpb.HealthListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st := list.GetStatuses()["simple"].GetStatus(); st != healthpb.HealthCheckResponse_SERVING || len(list.GetStatuses()) != len(testModels())+2 {
		t.Errorf("List = %v", list.GetStatuses())
	}

	// A model going away is seen by Check at once.
	if _, err := e.client.RepositoryModelUnload(testCtx(t), &inference.RepositoryModelUnloadRequest{ModelName: identityName(tensor.Int8)}); err != nil {
		t.Fatal(err)
	}
	if resp, err := health.Check(testCtx(t), &healthpb.HealthCheckRequest{Service: identityName(tensor.Int8)}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Check after unload = %v, %v", resp, err)
	}

	watch, err := health.Watch(testCtx(t), &healthpb.HealthCheckRequest{Service: "simple"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch answer = %v, %v", resp, err)
	}
	e.server.SetNotServing()
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after SetNotServing = %v, %v", resp, err)
	}
	for _, svc := range []string{"", "simple"} {
		if resp, err := health.Check(testCtx(t), &healthpb.HealthCheckRequest{Service: svc}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("Check(%q) after SetNotServing = %v, %v", svc, resp, err)
		}
	}
	if r, err := e.client.ServerReady(testCtx(t), &inference.ServerReadyRequest{}); err != nil || r.GetReady() {
		t.Errorf("ServerReady after SetNotServing = %v, %v", r, err)
	}
	// Stop ends the watch rather than waiting for it.
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	e.server.Stop(ctx)
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Watch after Stop = %v, want UNAVAILABLE", err)
	}
}

func TestReflection(t *testing.T) {
	e := newEnv(t, Config{})
	stream, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"inference.GRPCInferenceService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	resp = ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: "inference.GRPCInferenceService"}})
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("no descriptor for inference.GRPCInferenceService: %v", resp)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

func TestModelStreamInferClientGoesAway(t *testing.T) {
	e := newEnv(t, Config{})
	ctx, cancel := context.WithCancel(testCtx(t))
	stream, err := e.client.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	for v := int32(0); v < n; v++ {
		if err := stream.Send(gateRequest("gate8", v)); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		select {
		case <-e.gate8.started:
		case <-time.After(defaultTestTimeout):
			t.Fatal("requests did not start")
		}
	}
	cancel()
	wantCode(t, func() error { _, err := stream.Recv(); return err }(), codes.Canceled)
	// Every request read is counted once, as abandoned by the client.
	for i := range n {
		if o := e.nextObservation(t); o.code != 499 {
			t.Errorf("observation %d = %+v, want code 499", i, o)
		}
	}
	e.noObservation(t)
}

// TestServeAfterStop covers a shutdown that wins the race with startup:
// Serve must report it as a clean stop, not as a failure.
func TestServeAfterStop(t *testing.T) {
	s := New(Backends{}, Config{}, zap.NewNop())
	s.Stop(testCtx(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := s.Serve(ln); err != nil {
		t.Errorf("Serve after Stop = %v, want nil", err)
	}
}
