package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/serving/servingtest"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

const (
	// testTimeout bounds every wait for something that must happen.
	testTimeout = 10 * time.Second
	// testShortTimeout is how long a test waits to be confident that
	// something does not happen.
	testShortTimeout = 100 * time.Millisecond
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp keeps one process-wide goroutine refreshing its Date
		// header once started.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// fasthttp's idle-worker and idle-connection cleaners sleep up to
		// 10s between checks and notice a stop only when they wake; they
		// exit on their own.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
	)
}

// errModelFailed is what the "fail" model returns from every run.
var errModelFailed = errors.New("kernel exploded")

// identityModel copies its one input "IN" of type dt to "OUT".
func identityModel(dt tensor.DataType) *servingtest.Model {
	return &servingtest.Model{
		In:  []tensor.Spec{{Name: "IN", DataType: dt, Shape: []int64{-1}}},
		Out: []tensor.Spec{{Name: "OUT", DataType: dt, Shape: []int64{-1}}},
		RunFunc: func(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			return []tensor.Tensor{{Name: "OUT", DataType: dt, Shape: append([]int64(nil), in[0].Shape...), Data: bytes.Clone(in[0].Data)}}, nil
		},
	}
}

// fakeLoader picks a fake model by the model's folder name.
type fakeLoader struct {
	started chan struct{} // one send per "block" run
	release chan struct{} // closed to let "block" runs finish
}

func (l *fakeLoader) Load(_ context.Context, path string, _ repository.Instances) (serving.Model, error) {
	name := filepath.Base(filepath.Dir(filepath.Dir(path)))
	if dt, ok := strings.CutPrefix(name, "identity_"); ok {
		t, ok := tensor.ParseDataType(strings.ToUpper(dt))
		if !ok {
			return nil, errors.New("bad identity model name " + name)
		}
		return identityModel(t), nil
	}
	switch name {
	case "simple", "split":
		return servingtest.Simple(), nil
	case "block":
		m := identityModel(tensor.Int32)
		inner := m.RunFunc
		m.RunFunc = func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			l.started <- struct{}{}
			select {
			case <-l.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return inner(ctx, in)
		}
		return m, nil
	case "fail":
		m := identityModel(tensor.Int32)
		m.RunFunc = func(context.Context, []tensor.Tensor) ([]tensor.Tensor, error) { return nil, errModelFailed }
		return m, nil
	case "badout":
		m := identityModel(tensor.FP32)
		m.RunFunc = func(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			// One byte short of its own shape.
			return []tensor.Tensor{{Name: "OUT", DataType: tensor.FP32, Shape: in[0].Shape, Data: make([]byte, len(in[0].Data)-1)}}, nil
		}
		return m, nil
	}
	return nil, errors.New("no fake model " + name)
}

// testModels maps each model folder of the test repository to its
// config.yaml and versions.
var testModels = map[string]struct {
	config   string
	versions []string
}{
	"simple": {"version_policy: {all: true}\n", []string{"1", "2"}},
	"block":  {"max_batch_size: 1\ndynamic_batching: {max_queue_size: 1}\n", []string{"1"}},
	"fail":   {"", []string{"1"}},
	"badout": {"", []string{"1"}},
	"split":  {"version_policy: {all: true}\ntraffic:\n  split: {\"1\": 50, \"2\": 50}\n  sticky_key: x-user\n", []string{"1", "2"}},
}

func writeRepository(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write := func(name, config string, versions []string) {
		for _, v := range versions {
			dir := filepath.Join(root, name, v)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "model.onnx"), []byte("fake"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// Always a config.yaml: a folder without one is batched by
		// measurement, which the fake models are not made for.
		if err := os.WriteFile(filepath.Join(root, name, "config.yaml"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, m := range testModels {
		write(name, m.config, m.versions)
	}
	for _, dt := range tensor.AllDataTypes {
		write("identity_"+strings.ToLower(dt.String()), "", []string{"1"})
	}
	return root
}

// panicBackend makes Infer panic for the model "panic", to prove the
// handler recovers.
type panicBackend struct{ *serving.Server }

func (b panicBackend) Infer(ctx context.Context, req *serving.Request) (*serving.Response, error) {
	if req.Model == "panic" {
		panic("test panic")
	}
	return b.Server.Infer(ctx, req)
}

// env is one running HTTP front end over a serving core with fake models.
type env struct {
	url     string
	client  *http.Client
	serving *serving.Server
	http    *Server
	loader  *fakeLoader
	unblock func()
}

// envOption changes what newEnv builds.
type envOption int

// closedManagement keeps Config.AdminAllowLoopback as given: without it,
// newEnv opens the management API to the test's loopback client, as
// `make run` does.
const closedManagement envOption = 1

func newEnv(t *testing.T, cfg Config, opts ...envOption) *env {
	t.Helper()
	if !slices.Contains(opts, closedManagement) {
		cfg.AdminAllowLoopback = true
	}
	return newEnvWith(t, cfg, func(s *Server, ln net.Listener) error { return s.Serve(ln) }, nil)
}

func newEnvWith(t *testing.T, cfg Config, serve func(*Server, net.Listener) error, ln net.Listener) *env {
	t.Helper()
	loader := &fakeLoader{started: make(chan struct{}, 16), release: make(chan struct{})}
	var once sync.Once
	unblock := func() { once.Do(func() { close(loader.release) }) }
	root := writeRepository(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	srv := serving.New(loader, serving.Config{Root: root, Mode: serving.ModeExplicit}, log, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var names []string
	for name := range testModels {
		names = append(names, name)
	}
	for _, dt := range tensor.AllDataTypes {
		names = append(names, "identity_"+strings.ToLower(dt.String()))
	}
	for _, name := range names {
		if err := srv.LoadModel(ctx, name, nil); err != nil {
			t.Fatalf("load %s: %v", name, err)
		}
	}
	hs := New(BackendsOf(panicBackend{srv}), cfg, log)
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	served := make(chan error, 1)
	go func() { served <- serve(hs, ln) }()
	e := &env{
		url:     "http://" + ln.Addr().String(),
		client:  &http.Client{Timeout: testTimeout, Transport: &http.Transport{ExpectContinueTimeout: testTimeout}},
		serving: srv,
		http:    hs,
		loader:  loader,
		unblock: unblock,
	}
	t.Cleanup(func() {
		unblock()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		e.client.CloseIdleConnections()
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-ctx.Done():
			t.Error("Serve did not return after Shutdown")
		}
		if err := srv.Close(ctx); err != nil {
			t.Errorf("serving Close: %v", err)
		}
	})
	return e
}

// result is one HTTP exchange's outcome.
type result struct {
	code   int
	header http.Header
	body   []byte
}

func (e *env) do(t *testing.T, method, path string, body []byte, header map[string]string) result {
	t.Helper()
	req, err := http.NewRequest(method, e.url+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	// Send the path exactly as written, even a malformed escape.
	req.URL.Opaque = path
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, b}
}

func (e *env) get(t *testing.T, path string) result {
	t.Helper()
	return e.do(t, http.MethodGet, path, nil, nil)
}

func (e *env) post(t *testing.T, path, body string) result {
	t.Helper()
	return e.do(t, http.MethodPost, path, []byte(body), nil)
}
