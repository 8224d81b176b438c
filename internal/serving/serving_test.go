package serving

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTimeout = 10 * time.Second

// addModel is a fake Model: OUTPUT = INPUT + delta on FP32 [-1,4], where
// delta is fixed per instance so a response tells which instance served.
type addModel struct {
	delta  float32
	inputs []tensor.Spec // nil: INPUT FP32 [-1,4]
	closed atomic.Bool
	runs   atomic.Int64
	fail   error
	block  chan struct{} // when set, Run waits for it to close
	loader *fakeLoader
}

func (m *addModel) Inputs() []tensor.Spec {
	if m.inputs != nil {
		return m.inputs
	}
	return []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, 4}}}
}

func (m *addModel) Outputs() []tensor.Spec {
	return []tensor.Spec{{Name: "OUTPUT", DataType: tensor.FP32, Shape: []int64{-1, 4}}}
}

func (m *addModel) Run(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	if m.closed.Load() {
		return nil, errors.New("run on a closed session")
	}
	m.runs.Add(1)
	if m.block != nil {
		select {
		case <-m.block:
		case <-ctx.Done():
			return nil, fmt.Errorf("run stopped: %w", ctx.Err())
		}
	}
	if m.fail != nil {
		return nil, m.fail
	}
	out := make([]byte, len(in[0].Data))
	for i := 0; i < len(out); i += 4 {
		f := math.Float32frombits(binary.LittleEndian.Uint32(in[0].Data[i:]))
		if f == poison {
			return nil, errPoison
		}
		binary.LittleEndian.PutUint32(out[i:], math.Float32bits(f+m.delta))
	}
	return []tensor.Tensor{{Name: "OUTPUT", DataType: tensor.FP32, Shape: in[0].Shape, Data: out}}, nil
}

func (m *addModel) Close() error {
	if m.closed.Swap(true) {
		return errors.New("closed twice")
	}
	m.loader.live.Add(-1)
	return nil
}

// poison is the input value addModel cannot take: a batch holding it fails
// with errPoison, as a real model fails on data it cannot handle.
const poison = -1

var errPoison = errors.New("kernel failed: value out of range")

// fakeLoader hands out addModels; a path's delta is set by the test, and a
// path listed in fail refuses to load.
type fakeLoader struct {
	mu     sync.Mutex
	delta  map[string]float32
	fail   map[string]error
	runErr map[string]error
	block  map[string]chan struct{}
	inputs map[string][]tensor.Spec
	live   atomic.Int64
	loads  atomic.Int64
}

func newFakeLoader() *fakeLoader {
	return &fakeLoader{delta: map[string]float32{}, fail: map[string]error{}, runErr: map[string]error{}, block: map[string]chan struct{}{}, inputs: map[string][]tensor.Spec{}}
}

func (l *fakeLoader) set(path string, delta float32, fail error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delta[path] = delta
	l.fail[path] = fail
}

func (l *fakeLoader) Load(_ context.Context, path string, _ repository.Instances) (Model, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.fail[path]; err != nil {
		return nil, err
	}
	l.loads.Add(1)
	l.live.Add(1)
	return &addModel{delta: l.delta[path], loader: l, fail: l.runErr[path], block: l.block[path], inputs: l.inputs[path]}, nil
}

func batchingConfig() repository.Config {
	cfg := repository.DefaultConfig()
	cfg.MaxBatchSize = 8
	cfg.DynamicBatching = &repository.DynamicBatching{MaxQueueDelay: 200 * time.Microsecond, MaxQueueSize: 1024, DefaultTimeout: 5 * time.Second}
	return cfg
}

func desired(name string, cfg repository.Config, versions ...DesiredVersion) Desired {
	return Desired{Name: name, Config: cfg, ConfigHash: "h", Versions: versions}
}

func dv(n int64, path, fp string) DesiredVersion {
	return DesiredVersion{Number: n, Path: path, Fingerprint: fp}
}

func fp32(vals ...float32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func request(version string, rows int, base float32) *Request {
	vals := make([]float32, 4*rows)
	for i := range vals {
		vals[i] = base + float32(i)
	}
	return &Request{Model: "m", Version: version, Inputs: []tensor.Tensor{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{int64(rows), 4}, Data: fp32(vals...)}}}
}

// deltaOf returns the delta the serving instance added, checking that every
// element got the same one.
func deltaOf(t *testing.T, req *Request, resp *Response) float32 {
	t.Helper()
	in, out := req.Inputs[0].Data, resp.Outputs[0].Data
	if len(in) != len(out) {
		t.Fatalf("output has %d bytes, input %d", len(out), len(in))
	}
	var d float32
	for i := 0; i < len(in); i += 4 {
		got := math.Float32frombits(binary.LittleEndian.Uint32(out[i:])) - math.Float32frombits(binary.LittleEndian.Uint32(in[i:]))
		if i == 0 {
			d = got
		} else if got != d {
			t.Fatalf("element %d: delta %v, element 0 had %v (rows mixed up)", i/4, got, d)
		}
	}
	return d
}

func newTestServer(t *testing.T, l Loader, cfg Config) *Server {
	t.Helper()
	s := New(l, cfg, zap.NewNop(), nil, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestInferRoutesAndValidates(t *testing.T) {
	l := newFakeLoader()
	l.set("v1", 1, nil)
	l.set("v2", 2, nil)
	s := newTestServer(t, l, Config{StartupModels: []string{"m"}})
	if s.Ready() {
		t.Fatal("ready before the startup model loaded")
	}
	s.Apply(context.Background(), []Desired{desired("m", batchingConfig(), dv(1, "v1", "a"), dv(2, "v2", "a"))})
	if !s.Ready() {
		t.Fatalf("not ready after loading; index %+v", s.Index())
	}
	ctx := context.Background()

	resp, err := s.Infer(ctx, request("", 2, 10))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != "2" || resp.Model != "m" {
		t.Errorf("unversioned request served by %s v%s, want newest m v2", resp.Model, resp.Version)
	}
	if d := deltaOf(t, request("", 2, 10), resp); d != 2 {
		t.Errorf("delta %v, want 2", d)
	}
	resp, err = s.Infer(ctx, request("1", 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != "1" {
		t.Errorf("request for v1 served by v%s", resp.Version)
	}

	bad := func(mut func(r *Request)) *Request { r := request("", 1, 0); mut(r); return r }
	tests := []struct {
		name string
		req  *Request
		want error
	}{
		{"unknown model", bad(func(r *Request) { r.Model = "nope" }), ErrModelNotFound},
		{"unknown version", bad(func(r *Request) { r.Version = "7" }), ErrVersionNotFound},
		{"bad version", bad(func(r *Request) { r.Version = "x" }), ErrVersionNotFound},
		{"unknown input", bad(func(r *Request) { r.Inputs[0].Name = "X" }), ErrInvalidRequest},
		{"missing input", bad(func(r *Request) { r.Inputs = nil }), ErrInvalidRequest},
		{"twice", bad(func(r *Request) { r.Inputs = append(r.Inputs, r.Inputs[0]) }), ErrInvalidRequest},
		{"dtype", bad(func(r *Request) { r.Inputs[0].DataType = tensor.Int32 }), ErrInvalidRequest},
		{"shape", bad(func(r *Request) { r.Inputs[0].Shape = []int64{1, 5} }), ErrInvalidRequest},
		{"too many rows", request("", 9, 0), ErrInvalidRequest},
		{"unknown output", bad(func(r *Request) { r.Outputs = []string{"Y"} }), ErrInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Infer(ctx, tc.req)
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMetadataAndIndex(t *testing.T) {
	l := newFakeLoader()
	l.set("v1", 1, nil)
	l.set("bad", 0, errors.New("corrupt model file"))
	s := newTestServer(t, l, Config{})
	s.Apply(context.Background(), []Desired{desired("m", batchingConfig(), dv(1, "v1", "a"), dv(3, "bad", "a"))})

	md, err := s.ModelMetadata("m", "")
	if err != nil {
		t.Fatal(err)
	}
	if md.Platform != "onnxruntime_onnx" || len(md.Inputs) != 1 || md.Inputs[0].Name != "INPUT" || fmt.Sprint(md.Versions) != "[1]" {
		t.Errorf("metadata %+v", md)
	}
	if _, err := s.ModelMetadata("m", "3"); !errors.Is(err, ErrNotReady) {
		t.Errorf("metadata of failed version: %v, want ErrNotReady", err)
	}
	if ok, err := s.ModelReady("m", "3"); ok || err != nil {
		t.Errorf("ModelReady(failed version) = %v, %v; want false, nil", ok, err)
	}
	if _, err := s.ModelReady("m", "9"); !errors.Is(err, ErrVersionNotFound) {
		t.Errorf("ModelReady(unknown version): %v", err)
	}
	idx := s.Index()
	if len(idx) != 2 || idx[0].Version != "1" || idx[0].State != StateReady || idx[1].State != StateUnavailable || idx[1].Reason == "" {
		t.Errorf("index %+v", idx)
	}
}

// TestHotSwapUnderLoad keeps requests flowing while versions are added,
// replaced, broken and removed, and requires that not one request fails and
// every session is released.
func TestHotSwapUnderLoad(t *testing.T) {
	l := newFakeLoader()
	for i := range 20 {
		l.set(fmt.Sprintf("p%d", i), float32(i), nil)
	}
	l.set("corrupt", 0, errors.New("corrupt model file"))
	s := newTestServer(t, l, Config{DrainTimeout: testTimeout})
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "p0", "a"))})

	// Each step is a repository state; any delta of its serving set is a
	// valid answer while it is current or just replaced.
	steps := [][]DesiredVersion{
		{dv(1, "p0", "a"), dv(2, "p1", "a")},      // add v2
		{dv(2, "p2", "b")},                        // replace v2's file, drop v1
		{dv(2, "corrupt", "c")},                   // corrupt v2: old instance keeps serving
		{dv(2, "p3", "d"), dv(3, "p4", "a")},      // fix it, add v3
		{dv(3, "p5", "b")},                        // replace v3, drop v2
		{dv(3, "p5", "b"), dv(4, "corrupt", "a")}, // broken new version beside a good one
		{dv(3, "p6", "c")},
	}
	stop := make(chan struct{})
	var failures, served atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req := request("", 1+i%3, float32(g*1000+i))
				resp, err := s.Infer(ctx, req)
				if err != nil {
					failures.Add(1)
					t.Errorf("request failed during hot swap: %v", err)
					return
				}
				deltaOf(t, req, resp)
				served.Add(1)
			}
		}()
	}
	for _, st := range steps {
		before := served.Load()
		s.Apply(ctx, []Desired{desired("m", batchingConfig(), st...)})
		eventually(t, func() bool { return served.Load() > before+20 })
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d requests failed", failures.Load())
	}
	resp, err := s.Infer(ctx, request("", 1, 0))
	if err != nil || resp.Version != "3" || deltaOf(t, request("", 1, 0), resp) != 6 {
		t.Fatalf("after the swaps: %+v, %v; want v3 with delta 6", resp, err)
	}
	eventually(t, func() bool { return l.live.Load() == 1 })
}

func TestConfigErrorKeepsServing(t *testing.T) {
	l := newFakeLoader()
	l.set("p", 5, nil)
	s := newTestServer(t, l, Config{})
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "p", "a"))})
	broken := desired("m", repository.Config{}, dv(1, "p", "a"))
	broken.ConfigErr = errors.New("max_batch_size: must be >= 0")
	s.Apply(ctx, []Desired{broken})
	if _, err := s.Infer(ctx, request("", 1, 0)); err != nil {
		t.Fatalf("a broken config.yaml took the model down: %v", err)
	}
	// The index says why the config on disk is not the one serving.
	idx := s.Index()
	if len(idx) != 1 || idx[0].State != StateReady || !strings.Contains(idx[0].Reason, "max_batch_size: must be >= 0") {
		t.Fatalf("index with a broken config: %+v, want READY with the config error as reason", idx)
	}
	// Fixed again: the reason goes.
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "p", "a"))})
	if idx := s.Index(); len(idx) != 1 || idx[0].State != StateReady || idx[0].Reason != "" {
		t.Fatalf("index after the config was fixed: %+v, want READY without reason", idx)
	}
}

func TestUnloadAndClose(t *testing.T) {
	l := newFakeLoader()
	l.set("p", 1, nil)
	s := New(l, Config{Mode: ModeExplicit}, zap.NewNop(), nil, nil)
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "p", "a"))})
	if err := s.UnloadModel("m"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Infer(ctx, request("", 1, 0)); !errors.Is(err, ErrNotReady) {
		t.Errorf("after unload: %v, want ErrNotReady", err)
	}
	eventually(t, func() bool { return l.live.Load() == 0 })
	idx := s.Index()
	if len(idx) != 1 || idx[0].State != StateUnavailable || idx[0].Reason != "unloaded" {
		t.Errorf("index after unload: %+v", idx)
	}
	if err := s.UnloadModel("other"); !errors.Is(err, ErrModelNotFound) {
		t.Errorf("unload unknown: %v", err)
	}

	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "p", "a"))})
	cctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	if err := s.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if l.live.Load() != 0 {
		t.Errorf("%d sessions live after Close", l.live.Load())
	}
	if _, err := s.Infer(ctx, request("", 1, 0)); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("after Close: %v, want ErrShuttingDown", err)
	}
}

func TestWrongModeRejected(t *testing.T) {
	s := newTestServer(t, newFakeLoader(), Config{Mode: ModePoll})
	if err := s.LoadModel(context.Background(), "m", nil); !errors.Is(err, ErrWrongMode) {
		t.Errorf("load in poll mode: %v", err)
	}
	if err := s.UnloadModel("m"); !errors.Is(err, ErrWrongMode) {
		t.Errorf("unload in poll mode: %v", err)
	}
}

// eventually polls cond until it holds; for states with no event to wait on
// (a background release finishing).
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in time")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStatistics(t *testing.T) {
	l := newFakeLoader()
	l.set("p", 1, nil)
	s := newTestServer(t, l, Config{})
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "p", "a"))})
	for range 3 {
		if _, err := s.Infer(ctx, request("", 2, 0)); err != nil {
			t.Fatal(err)
		}
	}
	bad := request("", 1, 0)
	bad.Outputs = []string{"nope"}
	if _, err := s.Infer(ctx, bad); err == nil {
		t.Fatal("unknown output accepted")
	} else if m, v := Labels(err); m != "m" || v != "1" {
		t.Errorf("Labels(%v) = %q, %q, want m, 1", err, m, v)
	}
	st, err := s.Statistics("m", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Version != "1" || st[0].Success.Count != 3 || st[0].InferenceCount != 6 ||
		st[0].ExecutionCount < 1 || st[0].ExecutionCount > 3 || st[0].LastInference.IsZero() || st[0].Compute.Total <= 0 {
		t.Errorf("statistics %+v", st)
	}
	if _, err := s.Statistics("m", "4"); !errors.Is(err, ErrVersionNotFound) {
		t.Errorf("stats of unknown version: %v", err)
	}
	if _, err := s.Statistics("x", ""); !errors.Is(err, ErrModelNotFound) {
		t.Errorf("stats of unknown model: %v", err)
	}
}

// TestLabels checks that every failure carries the canonical labels of what
// the request named, and only names the server has.
func TestLabels(t *testing.T) {
	l := newFakeLoader()
	l.set("p", 1, nil)
	s := newTestServer(t, l, Config{})
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "p", "a"))})
	badInput := request("1", 1, 0)
	badInput.Inputs[0].Name = "nope"
	tests := []struct {
		name           string
		fail           func() error
		model, version string
		wantErr        error
	}{
		{"unknown model", func() error { _, err := s.Infer(ctx, &Request{Model: "zzz", Version: "1"}); return err }, "", "", ErrModelNotFound},
		{"unknown version", func() error { _, err := s.Infer(ctx, request("9", 1, 0)); return err }, "m", "", ErrVersionNotFound},
		{"bad input on a version", func() error { _, err := s.Infer(ctx, badInput); return err }, "m", "1", ErrInvalidRequest},
		{"refused, version named", func() error { return s.Refuse(&Request{Model: "m", Version: "1"}, tensor.Invalidf("bad body")) }, "m", "1", ErrInvalidRequest},
		{"refused, no version", func() error { return s.Refuse(&Request{Model: "m"}, tensor.Invalidf("bad body")) }, "m", "", ErrInvalidRequest},
		{"refused, made-up version", func() error { return s.Refuse(&Request{Model: "m", Version: "x"}, tensor.Invalidf("bad body")) }, "m", "", ErrInvalidRequest},
		{"refused, unknown model", func() error { return s.Refuse(&Request{Model: "zzz"}, tensor.Invalidf("bad body")) }, "", "", ErrInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.fail()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if m, v := Labels(err); m != tt.model || v != tt.version {
				t.Errorf("Labels(%v) = %q, %q, want %q, %q", err, m, v, tt.model, tt.version)
			}
		})
	}
}
