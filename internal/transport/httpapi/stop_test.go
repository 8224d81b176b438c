package httpapi

import (
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestServeAfterShutdown covers a shutdown that wins the race with
// startup: Serve must return at once, and cleanly.
func TestServeAfterShutdown(t *testing.T) {
	s := New(Backends{}, Config{}, zap.NewNop())
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Shutdown = %v, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Serve after Shutdown kept serving")
	}
}
