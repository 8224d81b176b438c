package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/runtime"
)

const testTimeout = 30 * time.Second

// requireORT skips when the ONNX Runtime library cannot be found, unless
// ONNXSERVE_REQUIRE_ORT=1 (set by `make test`) makes that a failure.
func requireORT(t *testing.T) {
	t.Helper()
	if _, err := runtime.ResolveLibrary(""); err != nil {
		if os.Getenv("ONNXSERVE_REQUIRE_ORT") == "1" {
			t.Fatalf("ONNX Runtime library required: %v", err)
		}
		t.Skipf("no ONNX Runtime library: %v", err)
	}
}

// copyRepo copies the bundled models/ into a temporary folder the test may
// change.
func copyRepo(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("..", "..", "models")
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// testServer is an in-process onnxserve on free loopback ports.
type testServer struct {
	a    *app
	http string // base URL
	done chan error
	stop context.CancelFunc
}

func startServer(t *testing.T, repo string, extra ...string) *testServer {
	t.Helper()
	ts := startServerNoWait(t, repo, extra...)
	ts.waitReady(t)
	return ts
}

// startServerNoWait is startServer without waiting for readiness.
func startServerNoWait(t *testing.T, repo string, extra ...string) *testServer {
	t.Helper()
	requireORT(t)
	args := append([]string{"--model-repository", repo, "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
		"--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1", "--metrics-address", "127.0.0.1",
		"--shutdown-delay", "0s", "--repository-poll-interval", "200ms", "--repository-settle", "50ms",
		// Management calls from the test's loopback client, as `make run`
		// allows them; a test of the default passes --admin-allow-loopback=false.
		"--admin-allow-loopback",
		"--state-dir", t.TempDir()}, extra...)
	o, err := parseOptions(args)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(o, zap.NewNop(), zap.NewAtomicLevel())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{a: a, http: "http://" + a.httpLn.Addr().String(), done: make(chan error, 1), stop: cancel}
	go func() { ts.done <- a.run(ctx) }()
	t.Cleanup(func() { ts.shutdown(t) })
	return ts
}

func (ts *testServer) shutdown(t *testing.T) {
	t.Helper()
	if ts.stop == nil {
		return
	}
	ts.stop()
	ts.stop = nil
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("server stopped with: %v", err)
		}
	case <-time.After(testTimeout):
		// The stacks say where it hangs, on a machine where it cannot be
		// reproduced at will.
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("server did not stop; goroutines:\n%s", stacks.String())
	}
	if n := runtime.LiveSessions(); n != 0 {
		t.Errorf("%d ONNX Runtime sessions still open after shutdown", n)
	}
}

func (ts *testServer) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		resp, err := http.Get(ts.http + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready in %v (last: %v)", testTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// do sends a request and decodes a JSON answer into out (when not nil),
// returning the status code.
func do(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, url, b, err)
		}
	}
	return resp.StatusCode
}

type inferOutput struct {
	Name     string          `json:"name"`
	Datatype string          `json:"datatype"`
	Shape    []int64         `json:"shape"`
	Data     json.RawMessage `json:"data"`
}

type inferResponse struct {
	ModelName    string        `json:"model_name"`
	ModelVersion string        `json:"model_version"`
	ID           string        `json:"id"`
	Outputs      []inferOutput `json:"outputs"`
	Error        string        `json:"error"`
}

func seq(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out
}

func simpleBody(a, b []int) string {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return fmt.Sprintf(`{"id":"r1","inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":%s},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":%s}]}`, ja, jb)
}

// TestServeBundledModels is the README's promise: the bundled models answer
// correctly over HTTP through real ONNX Runtime.
func TestServeBundledModels(t *testing.T) {
	ts := startServer(t, copyRepo(t))

	a, b := seq(0, 16), seq(100, 16)
	var r inferResponse
	if code := do(t, "POST", ts.http+"/v2/models/simple/infer", simpleBody(a, b), &r); code != 200 {
		t.Fatalf("simple infer: %d %s", code, r.Error)
	}
	if r.ModelName != "simple" || r.ModelVersion != "1" || r.ID != "r1" || len(r.Outputs) != 2 {
		t.Fatalf("response %+v", r)
	}
	var sum, diff []int
	_ = json.Unmarshal(r.Outputs[0].Data, &sum)
	_ = json.Unmarshal(r.Outputs[1].Data, &diff)
	for i := range a {
		if sum[i] != a[i]+b[i] || diff[i] != a[i]-b[i] {
			t.Fatalf("element %d: sum %d diff %d; want %d %d", i, sum[i], diff[i], a[i]+b[i], a[i]-b[i])
		}
	}

	strs := func(v []int) string {
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = fmt.Sprintf("%q", fmt.Sprint(x))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	body := fmt.Sprintf(`{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"BYTES","data":%s},{"name":"INPUT1","shape":[1,16],"datatype":"BYTES","data":%s}]}`, strs(a), strs(b))
	r = inferResponse{}
	if code := do(t, "POST", ts.http+"/v2/models/simple_string/infer", body, &r); code != 200 {
		t.Fatalf("simple_string infer: %d %s", code, r.Error)
	}
	var ssum []string
	_ = json.Unmarshal(r.Outputs[0].Data, &ssum)
	if len(ssum) != 16 || ssum[3] != fmt.Sprint(a[3]+b[3]) {
		t.Fatalf("simple_string sums %q", ssum)
	}

	feat := make([]float32, 64)
	for i := range feat {
		feat[i] = float32(i%7) / 7
	}
	jf, _ := json.Marshal(feat)
	probs := map[string][]float64{}
	for _, v := range []string{"1", "2"} {
		r = inferResponse{}
		url := ts.http + "/v2/models/classifier/versions/" + v + "/infer"
		if code := do(t, "POST", url, fmt.Sprintf(`{"inputs":[{"name":"INPUT","shape":[1,64],"datatype":"FP32","data":%s}]}`, jf), &r); code != 200 {
			t.Fatalf("classifier v%s: %d %s", v, code, r.Error)
		}
		if r.ModelVersion != v {
			t.Errorf("asked for v%s, served by v%s", v, r.ModelVersion)
		}
		var p []float64
		_ = json.Unmarshal(r.Outputs[0].Data, &p)
		total := 0.0
		for _, x := range p {
			total += x
		}
		if len(p) != 10 || total < 0.999 || total > 1.001 {
			t.Errorf("v%s probabilities %v sum to %v", v, p, total)
		}
		probs[v] = p
	}
	if fmt.Sprint(probs["1"]) == fmt.Sprint(probs["2"]) {
		t.Error("classifier versions 1 and 2 answer alike")
	}

	var idx []map[string]string
	if code := do(t, "POST", ts.http+"/v2/repository/index", "", &idx); code != 200 || len(idx) != 4 {
		t.Fatalf("index: %d %v", code, idx)
	}
	for _, e := range idx {
		if e["state"] != "READY" {
			t.Errorf("index entry %v", e)
		}
	}
}

// TestErrorsOverHTTP walks the error statuses a client can cause.
func TestErrorsOverHTTP(t *testing.T) {
	ts := startServer(t, copyRepo(t))
	good := simpleBody(seq(0, 16), seq(0, 16))
	tests := []struct {
		name, method, path, body string
		code                     int
		inError                  string
	}{
		{"malformed json", "POST", "/v2/models/simple/infer", `{"inputs":[`, 400, ""},
		{"wrong dtype", "POST", "/v2/models/simple/infer", strings.ReplaceAll(good, "INT32", "FP32"), 400, "INPUT0"},
		{"wrong shape", "POST", "/v2/models/simple/infer", strings.ReplaceAll(good, "[1,16]", "[2,8]"), 400, "INPUT0"},
		{"data count", "POST", "/v2/models/simple/infer", strings.Replace(good, "[0,1,", "[1,", 1), 400, "INPUT0"},
		{"unknown model", "POST", "/v2/models/nope/infer", good, 404, "nope"},
		{"unknown version", "POST", "/v2/models/simple/versions/9/infer", good, 404, ""},
		{"missing input", "POST", "/v2/models/simple/infer", `{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":` + fmt.Sprint(strings.ReplaceAll(fmt.Sprint(seq(0, 16)), " ", ",")) + `}]}`, 400, "INPUT1"},
		{"too many rows", "POST", "/v2/models/simple/infer", strings.ReplaceAll(strings.ReplaceAll(good, "[1,16]", "[9,16]"), "", ""), 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r inferResponse
			code := do(t, tc.method, ts.http+tc.path, tc.body, &r)
			if code != tc.code {
				t.Errorf("status %d, want %d (error %q)", code, tc.code, r.Error)
			}
			if r.Error == "" || !strings.Contains(r.Error, tc.inError) {
				t.Errorf("error %q should name %q", r.Error, tc.inError)
			}
		})
	}
	// The server goes on after all of that.
	var r inferResponse
	if code := do(t, "POST", ts.http+"/v2/models/simple/infer", good, &r); code != 200 {
		t.Fatalf("after bad requests: %d %s", code, r.Error)
	}
}

// TestOversizedBody checks the body limit answers 413 with a JSON error.
func TestOversizedBody(t *testing.T) {
	ts := startServer(t, copyRepo(t), "--max-request-body-size", "1024")
	body := bytes.Repeat([]byte(" "), 4096)
	resp, err := http.Post(ts.http+"/v2/models/simple/infer", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r inferResponse
	_ = json.NewDecoder(resp.Body).Decode(&r)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || r.Error == "" {
		t.Errorf("oversized body: %d %q", resp.StatusCode, r.Error)
	}
}

func TestMissingLibraryIsOneClearLine(t *testing.T) {
	o, err := parseOptions([]string{"--onnxruntime-lib", "/nonexistent/libonnxruntime.so.1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = newApp(o, zap.NewNop(), zap.NewAtomicLevel())
	if !errors.Is(err, runtime.ErrLibrary) {
		t.Fatalf("newApp with a missing library: %v", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "/nonexistent/libonnxruntime.so.1") || !strings.Contains(msg, "ONNXRUNTIME_LIB") {
		t.Errorf("message should be one line naming the path and the fix: %q", msg)
	}
}
