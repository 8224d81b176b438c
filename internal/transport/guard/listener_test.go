package guard

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/onnxserve/onnxserve/internal/testcert"
)

// acceptAll accepts from ln until it fails, handing connections out on a
// channel.
func acceptAll(ln net.Listener) <-chan net.Conn {
	out := make(chan net.Conn, 16)
	go func() {
		defer close(out)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			out <- c
		}
	}()
	return out
}

func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reply := []byte("over the limit\n")
	ln := LimitListener(inner, 2, func(c net.Conn) { RejectConn(c, nil, ReplyAfterRequest(reply)) })
	defer ln.Close()
	accepted := acceptAll(ln)
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(tlsTestTimeout))
		t.Cleanup(func() { c.Close() })
		return c
	}
	next := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(tlsTestTimeout):
			t.Fatal("a connection within the limit was not accepted")
			return nil
		}
	}
	dial()
	first := next()
	dial()
	next()

	// The third is refused with the reply, then closed.
	third := dial()
	if _, err := third.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(third)
	if err != nil || string(got) != string(reply) {
		t.Fatalf("refused connection read %q, %v; want %q", got, err, reply)
	}
	select {
	case c := <-accepted:
		t.Fatalf("connection %v accepted over the limit", c.RemoteAddr())
	default:
	}

	// Closing an accepted connection frees its slot, once however often
	// it is closed.
	first.Close()
	first.Close()
	dial()
	next()
	fourth := dial()
	if _, err := fourth.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(fourth); string(got) != string(reply) {
		t.Fatalf("a double Close freed two slots: read %q", got)
	}
	if LimitListener(inner, 0, nil) != inner {
		t.Error("a limit of 0 should leave the listener as it is")
	}
}

// TestRejectConnTLS checks that a refused TLS client reads the reply
// through TLS.
func TestRejectConnTLS(t *testing.T) {
	ca := testcert.NewCA(t, "ca")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	server := &tls.Config{Certificates: []tls.Certificate{ca.Valid(t).TLSCertificate(t)}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		RejectConn(c, server, ReplyAfterRequest([]byte("busy")))
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), testcert.ClientConfig(ca))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(tlsTestTimeout))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if string(got) != "busy" {
		t.Fatalf("read %q, %v; want the reply", got, err)
	}
	select {
	case <-done:
	case <-time.After(tlsTestTimeout):
		t.Fatal("RejectConn did not return")
	}
}

func TestRejectLogOncePerSecond(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	var r RejectLog
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	for range 100 {
		r.Warn(zap.New(core), 7, remote)
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("%d lines for a burst of refusals, want 1", n)
	}
	if got := logs.All()[0].ContextMap()[LimitConnections]; got != int64(7) {
		t.Errorf("line names limit %v, want 7", got)
	}
	r.last.Store(time.Now().Add(-2 * time.Second).UnixNano())
	r.Warn(zap.New(core), 7, remote)
	if n := logs.Len(); n != 2 {
		t.Errorf("%d lines after a second passed, want 2", n)
	}
}
