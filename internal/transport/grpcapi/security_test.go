package grpcapi

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// dial opens another client connection to e's server.
func (e *env) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, AuthorizationMetadata, "Bearer "+token)
}

func TestInferenceTokens(t *testing.T) {
	e := newEnv(t, Config{InferenceTokens: guard.NewTokens([]string{"alpha", "beta"}), AdminToken: "admin"})
	health := healthgrpc.NewHealthClient(e.conn)
	refl := reflectionpb.NewServerReflectionClient(e.conn)
	calls := map[string]func(ctx context.Context) error{
		"ModelInfer": func(ctx context.Context) error {
			_, err := e.client.ModelInfer(ctx, simpleRequest("a"))
			return err
		},
		"ModelMetadata": func(ctx context.Context) error {
			_, err := e.client.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "simple"})
			return err
		},
		"ServerMetadata": func(ctx context.Context) error {
			_, err := e.client.ServerMetadata(ctx, &inference.ServerMetadataRequest{})
			return err
		},
		"ModelStatistics": func(ctx context.Context) error {
			_, err := e.client.ModelStatistics(ctx, &inference.ModelStatisticsRequest{Name: "simple"})
			return err
		},
		"ModelStreamInfer": func(ctx context.Context) error {
			stream, err := e.client.ModelStreamInfer(ctx)
			if err != nil {
				return err
			}
			// A refused stream may fail Send with io.EOF; Recv has the
			// status either way.
			_ = stream.Send(simpleRequest("s"))
			resp, err := stream.Recv()
			if err != nil {
				return err
			}
			if resp.GetErrorMessage() != "" {
				t.Errorf("stream answer: %s", resp.GetErrorMessage())
			}
			return stream.CloseSend()
		},
		"reflection": func(ctx context.Context) error {
			stream, err := refl.ServerReflectionInfo(ctx)
			if err != nil {
				return err
			}
			_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			_, err = stream.Recv()
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			for _, header := range []string{"", "Bearer wrong", "Basic alpha", "Bearer admin", "Bearer alph"} {
				ctx := testCtx(t)
				if header != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, AuthorizationMetadata, header)
				}
				st := wantCode(t, call(ctx), codes.Unauthenticated)
				if st.Message() != "unauthenticated" {
					t.Errorf("header %q: message %q gives detail away", header, st.Message())
				}
			}
			for _, token := range []string{"alpha", "beta"} {
				if err := call(withToken(testCtx(t), token)); err != nil {
					t.Fatalf("with token %s: %v", token, err)
				}
			}
		})
	}
	// Drain the observations of the inference calls above.
	for len(e.obs) > 0 {
		<-e.obs
	}

	t.Run("health stays open", func(t *testing.T) {
		ctx := testCtx(t)
		if _, err := e.client.ServerLive(ctx, &inference.ServerLiveRequest{}); err != nil {
			t.Error(err)
		}
		if _, err := e.client.ServerReady(ctx, &inference.ServerReadyRequest{}); err != nil {
			t.Error(err)
		}
		if _, err := e.client.ModelReady(ctx, &inference.ModelReadyRequest{Name: "simple"}); err != nil {
			t.Error(err)
		}
		if _, err := health.Check(ctx, &healthgrpc.HealthCheckRequest{}); err != nil {
			t.Error(err)
		}
	})
	t.Run("repository keeps the admin rule", func(t *testing.T) {
		wantCode(t, func() error {
			_, err := e.client.RepositoryIndex(withToken(testCtx(t), "alpha"), &inference.RepositoryIndexRequest{})
			return err
		}(), codes.Unauthenticated)
		if _, err := e.client.RepositoryIndex(withToken(testCtx(t), "admin"), &inference.RepositoryIndexRequest{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, Config{
		InferenceTokens: guard.NewTokens([]string{"alpha", "beta"}),
		// A rate so low that no token comes back while the test runs.
		RateLimiter: guard.NewRateLimiter(0.001, 2, 0),
	})
	for i := range 2 {
		if _, err := e.client.ModelInfer(withToken(testCtx(t), "alpha"), simpleRequest("")); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	_, err := e.client.ModelInfer(withToken(testCtx(t), "alpha"), simpleRequest(""))
	st := wantCode(t, err, codes.ResourceExhausted)
	if !strings.Contains(st.Message(), guard.LimitRate) {
		t.Errorf("message %q does not name the limit", st.Message())
	}
	// Another token is another client with its own bucket, also on a
	// stream, where every request counts.
	stream, err := e.client.ModelStreamInfer(withToken(testCtx(t), "beta"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := stream.Send(simpleRequest("")); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if limited := strings.Contains(resp.GetErrorMessage(), guard.LimitRate); limited != (i == 2) {
			t.Errorf("stream request %d: error %q", i, resp.GetErrorMessage())
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeLimitsOverGRPC(t *testing.T) {
	e := newEnv(t, Config{Limits: guard.Limits{MaxTensorElements: 16, MaxInputs: 2, MaxBytesElement: 8}})
	bytesReq := func(elem string) *inference.ModelInferRequest {
		raw := binary.LittleEndian.AppendUint32(nil, uint32(len(elem)))
		return &inference.ModelInferRequest{
			ModelName:        identityName(tensor.Bytes),
			Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "INPUT0", Datatype: "BYTES", Shape: []int64{1}}},
			RawInputContents: [][]byte{append(raw, elem...)},
		}
	}
	three := simpleRequest("")
	three.Inputs = append(three.Inputs, three.Inputs[0])
	big := simpleRequest("")
	for _, in := range big.Inputs {
		in.Shape = []int64{2, 16}
		in.Contents.IntContents = append(in.Contents.IntContents, in.Contents.IntContents...)
	}
	tests := []struct {
		name  string
		req   *inference.ModelInferRequest
		limit string
	}{
		{"inputs", three, guard.LimitInputs},
		{"elements", big, guard.LimitTensorElements},
		{"bytes element", bytesReq("123456789"), guard.LimitBytesElement},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.ModelInfer(testCtx(t), tt.req)
			st := wantCode(t, err, codes.ResourceExhausted)
			if !strings.Contains(st.Message(), tt.limit) {
				t.Errorf("message %q does not name %s", st.Message(), tt.limit)
			}
		})
	}
	if _, err := e.client.ModelInfer(testCtx(t), bytesReq("12345678")); err != nil {
		t.Fatalf("a BYTES element at the limit: %v", err)
	}
	if _, err := e.client.ModelInfer(testCtx(t), simpleRequest("")); err != nil {
		t.Fatalf("16 elements, at the limit: %v", err)
	}
}

func TestMaxConnections(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 1})
	holder := e.dial(t)
	first := inference.NewGRPCInferenceServiceClient(holder)
	if _, err := first.ServerLive(testCtx(t), &inference.ServerLiveRequest{}); err != nil {
		t.Fatal(err)
	}
	second := inference.NewGRPCInferenceServiceClient(e.dial(t))
	_, err := second.ServerLive(testCtx(t), &inference.ServerLiveRequest{})
	st := wantCode(t, err, codes.ResourceExhausted)
	if !strings.Contains(st.Message(), guard.LimitConnections) {
		t.Errorf("message %q does not name the limit", st.Message())
	}
	// The first connection is still served, and closing it frees its slot.
	if _, err := first.ServerLive(testCtx(t), &inference.ServerLiveRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		_, err := second.ServerLive(testCtx(t), &inference.ServerLiveRequest{}, grpc.WaitForReady(true))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new connection after the first closed: %v", err)
		}
	}
}

// TestMaxConcurrentStreams checks that a call beyond the stream limit of a
// connection waits for a free stream rather than running.
func TestMaxConcurrentStreams(t *testing.T) {
	e := newEnv(t, Config{MaxConcurrentStreams: 1})
	first := make(chan error, 1)
	go func() {
		_, err := e.client.ModelInfer(testCtx(t), gateRequest("gate8", 1))
		first <- err
	}()
	waitStarted(t, e.gate8, 1)
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestShortTimeout)
	defer cancel()
	_, err := e.client.ModelInfer(ctx, gateRequest("gate8", 2))
	wantCode(t, err, codes.DeadlineExceeded)
	select {
	case v := <-e.gate8.started:
		t.Fatalf("request %d ran beside the first on a one-stream connection", v)
	default:
	}
	e.gate8.open(1)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// scrubBackend reports index reasons and load errors that carry a host
// path, as ONNX Runtime's messages do.
type scrubBackend struct {
	*spyBackend
}

func (b scrubBackend) Index() []serving.IndexEntry {
	return []serving.IndexEntry{{Name: "m", Version: "1", State: serving.StateUnavailable,
		Reason: "load /srv/models/m/1/model.onnx: Load model from /srv/models/m/1/model.onnx failed: protobuf parsing failed"}}
}

func (b scrubBackend) LoadModel(context.Context, string, []byte) error {
	return &pathError{}
}

type pathError struct{}

func (*pathError) Error() string {
	return "load /srv/models/m/1/model.onnx: /srv/models/m -> /home/alice/m: path resolves outside the model repository"
}

func TestScrubHostPaths(t *testing.T) {
	e := newEnv(t, Config{})
	srv := New(BackendsOf(scrubBackend{e.backend}), Config{Scrub: guard.NewPathScrubber("/srv/models"), AdminAllowLoopback: true}, nil)
	ln := listenLoopback(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop(testCtx(t))
		<-served
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := inference.NewGRPCInferenceServiceClient(conn)
	idx, err := client.RepositoryIndex(testCtx(t), &inference.RepositoryIndexRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := "load m/1/model.onnx: Load model from m/1/model.onnx failed: protobuf parsing failed"
	if got := idx.GetModels()[0].GetReason(); got != want {
		t.Errorf("reason %q, want %q", got, want)
	}
	_, err = client.RepositoryModelLoad(testCtx(t), &inference.RepositoryModelLoadRequest{ModelName: "m"})
	st := wantCode(t, err, codes.Internal)
	if want := "load m/1/model.onnx: m -> <path>: path resolves outside the model repository"; st.Message() != want {
		t.Errorf("message %q, want %q", st.Message(), want)
	}
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestMetadataSizeLimit(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "x-padding", strings.Repeat("a", 2*maxHeaderListSize))
	// The server announces the bound, so the client refuses to send.
	_, err := e.client.ServerLive(ctx, &inference.ServerLiveRequest{})
	if err == nil || !strings.Contains(err.Error(), "1048576") {
		t.Fatalf("a call with 2 MiB of metadata: %v, want it refused at the announced bound", err)
	}
	if _, err := e.client.ServerLive(testCtx(t), &inference.ServerLiveRequest{}); err != nil {
		t.Fatalf("a normal call after it: %v", err)
	}
}
