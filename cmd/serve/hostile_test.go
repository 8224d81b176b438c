package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
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

// TestShutdownWithStalledUploads: an HTTP body and a gRPC message stalled
// mid-way neither hold shutdown to the drain timeout nor fail it.
func TestShutdownWithStalledUploads(t *testing.T) {
	ts := startServer(t, copyRepo(t), "--drain-timeout", "20s")
	hc, err := net.Dial("tcp", ts.a.httpLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := io.WriteString(hc, "POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	gc, err := net.Dial("tcp", ts.a.grpcLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	fr := http2.NewFramer(gc, gc)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/inference.GRPCInferenceService/ModelInfer"},
		{":authority", "x"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if _, err := gc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, false, []byte{0, 0, 0, 0, 100, 0x0a}); err != nil { // 1 of 100 bytes
		t.Fatal(err)
	}
	// A request answered on each front end after the stalled ones were
	// sent: the servers hold them by now.
	if code := do(t, "GET", ts.http+"/v2/health/ready", "", nil); code != 200 {
		t.Fatalf("ready: %d", code)
	}
	// Before, the drain timeout ran out waiting for them and the server
	// stopped with an error (the process exited 1).
	ts.shutdown(t)
}
