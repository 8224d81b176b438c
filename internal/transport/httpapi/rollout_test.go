package httpapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/serving"
)

// fakeRollouts records the calls the front end makes.
type fakeRollouts struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeRollouts) record(call string) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if strings.Contains(call, "busy") {
		return nil, fmt.Errorf("model %q: the rollout of version 3 is progressing: %w", "busy", serving.ErrConflict)
	}
	return map[string]string{"call": call}, nil
}

func (f *fakeRollouts) StartRollout(m string, body []byte) (any, error) {
	return f.record("start " + m + " " + string(body))
}
func (f *fakeRollouts) Rollout(m string) (any, error)        { return f.record("get " + m) }
func (f *fakeRollouts) PromoteRollout(m string) (any, error) { return f.record("promote " + m) }
func (f *fakeRollouts) AbortRollout(m string) (any, error)   { return f.record("abort " + m) }

// TestRolloutRoutes: the rollout endpoints reach their method, need the
// management token, refuse other methods and map errors through the
// status table.
func TestRolloutRoutes(t *testing.T) {
	f := &fakeRollouts{}
	s := New(Backends{Rollouts: f}, Config{AdminToken: "secret"}, zap.NewNop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		<-served
	})
	base := "http://" + ln.Addr().String()
	call := func(method, path, body, token string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		method, path, body, token string
		code                      int
		want                      string
	}{
		{"POST", "/v2/models/m/rollout", `{"candidate":"2"}`, "secret", 200, `start m {\"candidate\":\"2\"}`},
		{"GET", "/v2/models/m/rollout", "", "secret", 200, "get m"},
		{"POST", "/v2/models/m/rollout/promote", "", "secret", 200, "promote m"},
		{"POST", "/v2/models/m/rollout/abort", "", "secret", 200, "abort m"},
		{"POST", "/v2/models/busy/rollout/abort", "", "secret", 409, "rollout of version 3"},
		{"GET", "/v2/models/m/rollout", "", "", 401, ""},
		{"GET", "/v2/models/m/rollout", "", "wrong", 401, ""},
		{"GET", "/v2/models/m/rollout/promote", "", "secret", 405, "use POST"},
		{"PUT", "/v2/models/m/rollout", "", "secret", 405, ""},
		{"POST", "/v2/models/m/rollout/restart", "", "secret", 404, "no such endpoint"},
		{"POST", "/v2/models/m/rollout/promote/now", "", "secret", 404, "no such endpoint"},
	} {
		code, body := call(c.method, c.path, c.body, c.token)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %s, want %d containing %q", c.method, c.path, code, body, c.code, c.want)
		}
	}
	if len(f.calls) != 5 {
		t.Errorf("calls %q, want the five authorised ones", f.calls)
	}

	bare := New(Backends{}, Config{AdminAllowLoopback: true}, zap.NewNop())
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { served <- bare.Serve(ln2) }()
	defer func() {
		if err := bare.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		<-served
	}()
	resp, err := http.Get("http://" + ln2.Addr().String() + "/v2/models/m/rollout")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("without rollouts: %d, want 404", resp.StatusCode)
	}
}
