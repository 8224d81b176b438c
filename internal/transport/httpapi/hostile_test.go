package httpapi

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// TestErrorsClipClientStrings: an error that names what the client sent
// does not send a huge name back whole.
func TestErrorsClipClientStrings(t *testing.T) {
	e := newEnv(t, Config{})
	long := strings.Repeat("N", 70_000)
	for _, tc := range []struct{ name, body, msg string }{
		{"unknown input", `{"inputs":[{"name":"` + long + `","shape":[1],"datatype":"INT32","data":[1]}]}`, `unknown input "NNNN`},
		{"unknown output", simpleRequest(`"outputs":[{"name":"` + long + `"}],`), `unknown output "NNNN`},
		{"bad datatype", `{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"` + long + `","data":[1]}]}`, `NNNN`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(t, "/v2/models/simple/infer", tc.body)
			wantError(t, r, 400, tc.msg)
			if len(r.body) > 1024 {
				t.Fatalf("the error document is %d bytes: the client's string came back whole", len(r.body))
			}
		})
	}
}

// waitPhase waits until some tracked connection of s is in phase p.
func waitPhase(t *testing.T, s *Server, p int32) {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		s.conns.mu.Lock()
		found := false
		for c := range s.conns.conns {
			found = found || c.phase.Load() == p
		}
		s.conns.mu.Unlock()
		if found {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("no connection reached phase %d", p)
		case <-tick.C:
		}
	}
}

// TestShutdownCutsStalledUpload: a client that sends half a body must not
// hold shutdown for the whole drain timeout (which then failed).
func TestShutdownCutsStalledUpload(t *testing.T) {
	e := newEnv(t, Config{})
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\":"); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, e.http, phaseReading)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := e.http.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a stalled upload: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the stalled connection was not closed: %v", err)
	}
}

// TestShutdownSparesArrivedRequest: a keep-alive connection that fasthttp
// would close as idle at shutdown while a request already waits in its
// socket is spared once, so the request is answered rather than dropped.
func TestShutdownSparesArrivedRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tr := newConnTracker(testTimeout)
	dialed := make(chan net.Conn, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			dialed <- c
		}
	}()
	sc, err := lingerListener{ln, tr}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.(*lingerConn).Conn.Close()
	var client net.Conn
	select {
	case client = <-dialed:
	case <-time.After(testTimeout):
		t.Fatal("dial")
	}
	defer client.Close()
	lc := sc.(*lingerConn)
	tr.stopping.Store(true)
	if _, err := io.WriteString(client, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for !pending(lc.Conn) {
		if time.Now().After(deadline) {
			t.Fatal("the request never arrived")
		}
		runtime.Gosched()
	}
	if err := lc.Close(); err != nil {
		t.Fatal(err)
	}
	// Still open: the request can be read and answered.
	buf := make([]byte, 4)
	if _, err := io.ReadFull(lc, buf); err != nil || string(buf) != "GET " {
		t.Fatalf("after a spared Close: %q, %v", buf, err)
	}
	// The second Close closes.
	if err := lc.Close(); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadAll(client); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("not closed after the second Close: %v", err)
	}
}

// TestAuthBeforeBody: with inference tokens, a request without a valid one
// is answered 401 on its head; the server does not wait for (or buffer)
// the body it declares.
func TestAuthBeforeBody(t *testing.T) {
	e := newEnv(t, Config{InferenceTokens: guard.NewTokens([]string{"alpha"})})
	for _, auth := range []string{"", "Authorization: Bearer wrong\r\n"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		head := "POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth + "Content-Length: 67108863\r\n\r\n"
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(testTimeout))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: no answer before the body: %v", auth, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%q: status %d, want 401", auth, resp.StatusCode)
		}
	}
	// With the token, the body is read and served as before.
	r := e.do(t, "POST", "/v2/models/simple/infer", []byte(simpleRequest("")), map[string]string{"Authorization": "Bearer alpha"})
	if r.code != http.StatusOK {
		t.Fatalf("with the token: %d %s", r.code, r.body)
	}
}
