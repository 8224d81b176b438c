package main

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestMetricsPortTimeouts: a client that sends a head and then trickles
// (or never sends) its body is cut off on the metrics port too.
func TestMetricsPortTimeouts(t *testing.T) {
	ts := startServer(t, copyRepo(t), "--http-read-header-timeout", "500ms", "--http-read-timeout", "500ms")
	c, err := net.Dial("tcp", ts.a.metricsLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "PUT /log-level HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	_, err = io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the metrics port held a stalled request body open")
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
}
