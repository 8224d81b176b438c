package httpapi

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

func TestInferenceTokens(t *testing.T) {
	e := newEnv(t, Config{InferenceTokens: guard.NewTokens([]string{"alpha", "beta"}), AdminToken: "admin"})
	guarded := []struct{ method, path, body string }{
		{http.MethodGet, "/v2", ""},
		{http.MethodGet, "/v2/models/simple", ""},
		{http.MethodGet, "/v2/models/simple/versions/1", ""},
		{http.MethodGet, "/v2/models/simple/stats", ""},
		{http.MethodPost, "/v2/models/simple/infer", simpleRequest("")},
		{http.MethodPost, "/v2/models/simple/versions/1/infer", simpleRequest("")},
	}
	for _, g := range guarded {
		t.Run(g.method+g.path, func(t *testing.T) {
			for _, header := range []map[string]string{nil, bearer("wrong"), bearer("admin"), {"Authorization": "Basic alpha"}, bearer("alph")} {
				r := e.do(t, g.method, g.path, []byte(g.body), header)
				wantError(t, r, http.StatusUnauthorized, "unauthorized")
				jsonEqual(t, r.body, `{"error":"unauthorized"}`)
				if r.header.Get("WWW-Authenticate") != "Bearer" {
					t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
				}
			}
			for _, token := range []string{"alpha", "beta"} {
				if r := e.do(t, g.method, g.path, []byte(g.body), bearer(token)); r.code != http.StatusOK {
					t.Fatalf("with token %s: %d %s", token, r.code, r.body)
				}
			}
		})
	}
	for _, path := range []string{"/v2/health/live", "/v2/health/ready", "/v2/models/simple/ready", "/v2/models/simple/versions/1/ready"} {
		if r := e.get(t, path); r.code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200 (health stays open)", path, r.code)
		}
	}
	// Management keeps its own token, which an inference token does not
	// replace.
	for _, mgmt := range []struct{ method, path string }{{http.MethodPost, "/v2/repository/index"}, {http.MethodGet, "/v2/models/split/traffic"}} {
		wantError(t, e.do(t, mgmt.method, mgmt.path, nil, bearer("alpha")), http.StatusUnauthorized, "unauthorized")
		if r := e.do(t, mgmt.method, mgmt.path, nil, bearer("admin")); r.code != http.StatusOK {
			t.Errorf("%s %s with the admin token: %d %s", mgmt.method, mgmt.path, r.code, r.body)
		}
	}
}

func TestRateLimit(t *testing.T) {
	// A rate so low that no token comes back while the test runs.
	e := newEnv(t, Config{RateLimiter: guard.NewRateLimiter(0.001, 2, 0)})
	for i := range 2 {
		if r := e.post(t, "/v2/models/simple/infer", simpleRequest("")); r.code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, r.code, r.body)
		}
	}
	r := e.post(t, "/v2/models/simple/infer", simpleRequest(""))
	wantError(t, r, http.StatusTooManyRequests, guard.LimitRate)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Only inference counts: probes and metadata go on.
	for range 5 {
		if r := e.get(t, "/v2/health/ready"); r.code != http.StatusOK {
			t.Fatalf("health after the limit: %d", r.code)
		}
		if r := e.get(t, "/v2/models/simple"); r.code != http.StatusOK {
			t.Fatalf("metadata after the limit: %d", r.code)
		}
	}
}

func TestDecodeLimitsOverHTTP(t *testing.T) {
	e := newEnv(t, Config{Limits: guard.Limits{MaxTensorElements: 16, MaxInputs: 2, MaxBytesElement: 8}})
	three := `{"inputs":[` + strings.Repeat(`{"name":"IN","shape":[1],"datatype":"INT32","data":[1]},`, 2) + `{"name":"IN","shape":[1],"datatype":"INT32","data":[1]}]}`
	binaryBytes := func(elem string) (string, []byte) {
		js := `{"inputs":[{"name":"IN","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":` + strconv.Itoa(4+len(elem)) + `}}]}`
		body := append([]byte(js), binary.LittleEndian.AppendUint32(nil, uint32(len(elem)))...)
		return js, append(body, elem...)
	}
	js, body := binaryBytes("123456789")
	tests := []struct {
		name, path string
		body       []byte
		header     map[string]string
		limit      string
	}{
		{"inputs", "/v2/models/identity_int32/infer", []byte(three), nil, guard.LimitInputs},
		{"elements by shape", "/v2/models/identity_int32/infer", []byte(`{"inputs":[{"name":"IN","shape":[100000000],"datatype":"INT32","data":[1]}]}`), nil, guard.LimitTensorElements},
		{"elements by data", "/v2/models/identity_int32/infer", []byte(`{"inputs":[{"name":"IN","datatype":"INT32","data":[` + strings.Repeat("1,", 16) + `1],"shape":[17]}]}`), nil, guard.LimitTensorElements},
		{"bytes element json", "/v2/models/identity_bytes/infer", []byte(`{"inputs":[{"name":"IN","shape":[1],"datatype":"BYTES","data":["123456789"]}]}`), nil, guard.LimitBytesElement},
		{"bytes element binary", "/v2/models/identity_bytes/infer", body, map[string]string{headerInferenceLength: strconv.Itoa(len(js))}, guard.LimitBytesElement},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, e.do(t, http.MethodPost, tt.path, tt.body, tt.header), http.StatusRequestEntityTooLarge, tt.limit)
		})
	}
	js, body = binaryBytes("12345678")
	if r := e.do(t, http.MethodPost, "/v2/models/identity_bytes/infer", body, map[string]string{headerInferenceLength: strconv.Itoa(len(js))}); r.code != http.StatusOK {
		t.Fatalf("a BYTES element at the limit: %d %s", r.code, r.body)
	}
}

// trickle writes data one byte at a time, a byte every interval, until it
// is written, the connection fails or stop is closed.
func trickle(c net.Conn, data string, interval time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; i < len(data); i++ {
		if _, err := c.Write([]byte{data[i]}); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// TestSlowClientsCutOff is the slowloris defence: a client that trickles
// its head, or its body, loses the connection after the timeout instead of
// holding it for as long as it keeps sending.
func TestSlowClientsCutOff(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := newEnv(t, Config{ReadHeaderTimeout: timeout, ReadTimeout: timeout})
	body := simpleRequest("")
	tests := []struct {
		name, fast, slow string
	}{
		{"head", "POST /v2/models/simple/infer HTTP/1.1\r\n", "Host: x\r\nX-Padding: " + strings.Repeat("a", 400) + "\r\n\r\n"},
		{"body", "POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n", body},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.fast); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			// At 10ms a byte the slow part takes seconds, many times the
			// timeout.
			go trickle(c, tt.slow, 10*time.Millisecond, stop)
			start := time.Now()
			if err := c.SetReadDeadline(start.Add(testTimeout)); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			elapsed := time.Since(start)
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				t.Fatalf("the server kept a trickling client for %v", elapsed)
			}
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestTimeout {
					t.Fatalf("status %d, want 408 or a closed connection", resp.StatusCode)
				}
			}
			if elapsed > time.Duration(len(tt.slow))*10*time.Millisecond/2 {
				t.Fatalf("cut off after %v, want about %v", elapsed, timeout)
			}
		})
	}
}

func TestMaxConnections(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 1})
	addr := strings.TrimPrefix(e.url, "http://")
	get := func(c net.Conn) (*http.Response, []byte) {
		t.Helper()
		if err := c.SetDeadline(time.Now().Add(testTimeout)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if resp, _ := get(first); resp.StatusCode != http.StatusOK {
		t.Fatalf("first connection: %d", resp.StatusCode)
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	resp, b := get(second)
	wantError(t, result{resp.StatusCode, resp.Header, b}, http.StatusServiceUnavailable, guard.LimitConnections)
	// The first connection is still served; once it closes, its slot is
	// free again.
	if resp, _ := get(first); resp.StatusCode != http.StatusOK {
		t.Fatalf("first connection again: %d", resp.StatusCode)
	}
	first.Close()
	deadline := time.Now().Add(testTimeout)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := get(c)
		c.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after the first closed: %d", resp.StatusCode)
		}
	}
}

// scrubBackend reports index reasons and load errors that carry a host
// path, as ONNX Runtime's messages do.
type scrubBackend struct{ *serving.Server }

func (scrubBackend) Index() []serving.IndexEntry {
	return []serving.IndexEntry{{Name: "m", Version: "1", State: serving.StateUnavailable,
		Reason: "load /srv/models/m/1/model.onnx: Load model from /srv/models/m/1/model.onnx failed: protobuf parsing failed"}}
}

func (scrubBackend) LoadModel(context.Context, string, []byte) error {
	return errors.New("load /srv/models/m/1/model.onnx: /srv/models/m -> /home/alice/m: path resolves outside the model repository")
}

func TestScrubHostPaths(t *testing.T) {
	e := newEnv(t, Config{})
	hs := New(BackendsOf(scrubBackend{e.serving}), Config{Scrub: guard.NewPathScrubber("/srv/models"), AdminAllowLoopback: true}, zaptest.NewLogger(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	client := &http.Client{Timeout: testTimeout}
	post := func(path string) (int, string) {
		resp, err := client.Post("http://"+ln.Addr().String()+path, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("/v2/repository/index"); code != http.StatusOK ||
		body != `[{"name":"m","version":"1","state":"UNAVAILABLE","reason":"load m/1/model.onnx: Load model from m/1/model.onnx failed: protobuf parsing failed"}]` {
		t.Errorf("index: %d %s", code, body)
	}
	code, body := post("/v2/repository/models/m/load")
	if code != http.StatusInternalServerError {
		t.Errorf("load: %d %s", code, body)
	}
	jsonEqual(t, []byte(body), `{"error":"load m/1/model.onnx: m -> <path>: path resolves outside the model repository"}`)
	client.CloseIdleConnections()
}
