package grpcapi

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/serving/servingtest"
	"github.com/onnxserve/onnxserve/internal/tensor"
	inference "github.com/onnxserve/onnxserve/proto"
)

const (
	// defaultTestTimeout bounds every wait for something that must happen.
	defaultTestTimeout = 10 * time.Second
	// defaultTestShortTimeout is how long a test waits to be confident that
	// something does not happen.
	defaultTestShortTimeout = 50 * time.Millisecond
)

// observation is one Config.Observe call.
type observation struct {
	model, version string
	code           int
	d              time.Duration
	id             string
}

// spyBackend wraps the real serving core: it records the routing keys of
// inference requests and panics for the model named "panic", to exercise
// the recovery paths.
type spyBackend struct {
	*serving.Server
	mu          sync.Mutex
	routingKeys []string
}

func (b *spyBackend) Infer(ctx context.Context, req *serving.Request) (*serving.Response, error) {
	if req.Model == "panic" {
		panic("spy backend: Infer panics on purpose")
	}
	// The key serving routes by for a model on the default sticky key:
	// the metadata value, else the routing_key parameter.
	key := req.RoutingKey
	if req.Metadata != nil {
		if v := req.Metadata.Get(RoutingKeyMetadata); v != "" {
			key = v
		}
	}
	b.mu.Lock()
	b.routingKeys = append(b.routingKeys, key)
	b.mu.Unlock()
	return b.Server.Infer(ctx, req)
}

func (b *spyBackend) ModelMetadata(name, version string) (serving.ModelMetadata, error) {
	if name == "panic" {
		panic("spy backend: ModelMetadata panics on purpose")
	}
	return b.Server.ModelMetadata(name, version)
}

func (b *spyBackend) lastRoutingKey() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.routingKeys) == 0 {
		return "<none>"
	}
	return b.routingKeys[len(b.routingKeys)-1]
}

// env is one gRPC server on 127.0.0.1 in front of a real serving core that
// runs fake models, and a client connected to it.
type env struct {
	serving *serving.Server
	backend *spyBackend
	server  *Server
	conn    *grpc.ClientConn
	client  inference.GRPCInferenceServiceClient
	gate    *gate // "gate": one instance, a queue of one
	gate8   *gate // "gate8": eight instances
	logs    *observer.ObservedLogs
	obs     chan observation
	served  chan error
}

// testModels are the models every env loads; "broken" fails to load.
func testModels() []string {
	names := []string{"simple", "gate", "gate8", "fail", "broken"}
	for _, dt := range tensor.AllDataTypes {
		names = append(names, identityName(dt))
	}
	return names
}

// envOption changes what newEnv builds.
type envOption int

// closedManagement keeps Config.AdminAllowLoopback as given: without it,
// newEnv opens the repository RPCs to the test's loopback client, as
// `make run` does.
const closedManagement envOption = 1

func newEnv(t *testing.T, cfg Config, opts ...envOption) *env {
	t.Helper()
	if !slices.Contains(opts, closedManagement) {
		cfg.AdminAllowLoopback = true
	}
	e := &env{gate: newGate(), gate8: newGate(), obs: make(chan observation, 1024), served: make(chan error, 1)}
	loader := &fakeLoader{models: map[string]func() (serving.Model, error){
		"simple": func() (serving.Model, error) { return servingtest.Simple(), nil },
		"gate":   func() (serving.Model, error) { return e.gate.model(), nil },
		"gate8":  func() (serving.Model, error) { return e.gate8.model(), nil },
		"fail":   func() (serving.Model, error) { return failingModel(), nil },
		"broken": func() (serving.Model, error) { return nil, errors.New("model.onnx: protobuf parsing failed") },
	}}
	for _, dt := range tensor.AllDataTypes {
		loader.models[identityName(dt)] = func() (serving.Model, error) { return identityModel(dt), nil }
	}
	root := writeRepository(t, testModels(), map[string]string{
		"gate":  "max_batch_size: 1\ndynamic_batching:\n  max_queue_size: 1\n",
		"gate8": "instances:\n  count: 8\n",
	})
	e.serving = serving.New(loader, serving.Config{Root: root, Mode: serving.ModeExplicit, DrainTimeout: defaultTestTimeout}, zap.NewNop(), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	for _, n := range testModels() {
		err := e.serving.LoadModel(ctx, n, nil)
		if (err != nil) != (n == "broken") {
			t.Fatalf("LoadModel(%q) = %v", n, err)
		}
	}
	e.backend = &spyBackend{Server: e.serving}

	if cfg.Observe == nil {
		cfg.Observe = func(model, version, id string, code int, d time.Duration) {
			e.obs <- observation{model, version, code, d, id}
		}
	}
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	e.server = New(BackendsOf(e.backend), cfg, zap.New(core))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { e.served <- e.server.Serve(ln) }()
	e.conn, err = grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.client = inference.NewGRPCInferenceServiceClient(e.conn)

	t.Cleanup(func() {
		close(e.gate.stop)
		close(e.gate8.stop)
		ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
		defer cancel()
		e.server.Stop(ctx)
		if err := <-e.served; err != nil {
			t.Errorf("Serve = %v, want nil after Stop", err)
		}
		if err := e.conn.Close(); err != nil {
			t.Errorf("client close: %v", err)
		}
		if err := e.serving.Close(ctx); err != nil {
			t.Errorf("serving close: %v", err)
		}
	})
	return e
}

// ctx returns a context bounded by defaultTestTimeout.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// nextObservation waits for the next Observe call.
func (e *env) nextObservation(t *testing.T) observation {
	t.Helper()
	select {
	case o := <-e.obs:
		return o
	case <-time.After(defaultTestTimeout):
		t.Fatal("Observe was not called")
		return observation{}
	}
}

// noObservation asserts that Observe is not called again soon.
func (e *env) noObservation(t *testing.T) {
	t.Helper()
	select {
	case o := <-e.obs:
		t.Fatalf("unexpected Observe call %+v", o)
	case <-time.After(defaultTestShortTimeout):
	}
}

// waitStarted waits until g has started a run for value v.
func waitStarted(t *testing.T, g *gate, v int32) {
	t.Helper()
	select {
	case got := <-g.started:
		if got != v {
			t.Fatalf("run started for %d, want %d", got, v)
		}
	case <-time.After(defaultTestTimeout):
		t.Fatalf("run for %d never started", v)
	}
}

// gateRequest is a request for a gate model carrying value v.
func gateRequest(model string, v int32) *inference.ModelInferRequest {
	return &inference.ModelInferRequest{
		ModelName: model,
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1}},
		},
		RawInputContents: [][]byte{binary.LittleEndian.AppendUint32(nil, uint32(v))},
	}
}

// simpleRequest asks "simple" for a+b and a-b over one row of 16 values,
// a[i] = i and b[i] = 1, as typed contents.
func simpleRequest(id string) *inference.ModelInferRequest {
	a, b := make([]int32, 16), make([]int32, 16)
	for i := range a {
		a[i], b[i] = int32(i), 1
	}
	in := func(name string, v []int32) *inference.ModelInferRequest_InferInputTensor {
		return &inference.ModelInferRequest_InferInputTensor{
			Name: name, Datatype: "INT32", Shape: []int64{1, 16},
			Contents: &inference.InferTensorContents{IntContents: v},
		}
	}
	return &inference.ModelInferRequest{ModelName: "simple", Id: id, Inputs: []*inference.ModelInferRequest_InferInputTensor{in("INPUT0", a), in("INPUT1", b)}}
}

// int32s decodes little-endian INT32 data.
func int32s(b []byte) []int32 {
	out := make([]int32, len(b)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// wantCode fails unless err is a status with code.
func wantCode(t *testing.T, err error, code codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
	return st
}
