package payloadlog

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/onnxserve/onnxserve/internal/testcert"
)

// TestHTTPSinkTLS: an https receiver is reached with the CA file that
// signed its certificate, and refused without it.
func TestHTTPSinkTLS(t *testing.T) {
	ca := testcert.NewCA(t, "payload sink CA")
	var got atomic.Int64
	p, err := cloudevents.NewHTTP()
	if err != nil {
		t.Fatal(err)
	}
	h, err := cloudevents.NewHTTPReceiveHandler(context.Background(), p, func(event.Event) { got.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Valid(t).TLSCertificate(t)}}
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	testcert.WriteFile(t, caFile, ca.PEM)
	ctx := context.Background()

	trusted, err := NewHTTPSink(HTTPConfig{URL: srv.URL, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	defer trusted.Close()
	if err := trusted.Write(ctx, testEvent("a")); err != nil || got.Load() != 1 {
		t.Fatalf("delivery with the CA file: %v, %d events received", err, got.Load())
	}
	untrusted, err := NewHTTPSink(HTTPConfig{URL: srv.URL, Retries: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer untrusted.Close()
	if err := untrusted.Write(ctx, testEvent("b")); err == nil || got.Load() != 1 {
		t.Fatalf("delivery without the CA: %v, %d events received; want a certificate error", err, got.Load())
	}
	if _, err := NewHTTPSink(HTTPConfig{URL: "http://localhost/", CAFile: caFile}); err == nil || !strings.Contains(err.Error(), "not https") {
		t.Errorf("a CA file for an http URL: %v", err)
	}
}

// TestHTTPSinkRetries: 5xx and 429 answers are retried with backoff until
// the retries run out; other 4xx answers are final at once.
func TestHTTPSinkRetries(t *testing.T) {
	for _, tt := range []struct {
		status, wantCalls int
	}{{http.StatusInternalServerError, 3}, {http.StatusTooManyRequests, 3}, {http.StatusBadRequest, 1}} {
		var calls atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			calls.Add(1)
			w.WriteHeader(tt.status)
		}))
		s, err := NewHTTPSink(HTTPConfig{URL: srv.URL, Retries: 2, Backoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(context.Background(), testEvent("x")); err == nil {
			t.Errorf("status %d: Write succeeded", tt.status)
		}
		if n := calls.Load(); n != int64(tt.wantCalls) {
			t.Errorf("status %d: %d attempts, want %d", tt.status, n, tt.wantCalls)
		}
		s.Close()
		srv.Close()
	}
}
