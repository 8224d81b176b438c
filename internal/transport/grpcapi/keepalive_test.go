package grpcapi

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	inference "github.com/onnxserve/onnxserve/proto"
)

// goAway is one GOAWAY frame a client received.
type goAway struct {
	code  http2.ErrCode
	debug string
}

// frameSpy is a client connection that copies what it reads into an
// HTTP/2 frame reader, which reports every GOAWAY the server sends.
type frameSpy struct {
	net.Conn
	w *io.PipeWriter
}

func (c *frameSpy) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		// The frame reader drains the pipe until it is closed.
		_, _ = c.w.Write(p[:n])
	}
	return n, err
}

func (c *frameSpy) Close() error {
	_ = c.w.Close()
	return c.Conn.Close()
}

// spyDialer dials addr, counts the connections and reports the GOAWAY
// frames each receives on goaways.
func spyDialer(addr string, dials *atomic.Int32, goaways chan<- goAway) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		dials.Add(1)
		r, w := io.Pipe()
		go func() {
			fr := http2.NewFramer(nil, r)
			fr.SetMaxReadFrameSize(1 << 24)
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					_, _ = io.Copy(io.Discard, r)
					return
				}
				if g, ok := f.(*http2.GoAwayFrame); ok {
					select {
					case goaways <- goAway{code: g.ErrCode, debug: string(g.DebugData())}:
					default:
					}
				}
			}
		}()
		return &frameSpy{Conn: c, w: w}, nil
	}
}

// TestMaxConnectionAge is what rebalances gRPC clients over the pods an
// autoscaler adds: a connection past its age gets a GOAWAY, the client
// opens a new one for its next calls, the call in flight finishes on the
// old one, and no call fails.
func TestMaxConnectionAge(t *testing.T) {
	e := newEnv(t, Config{Keepalive: keepalive.ServerParameters{MaxConnectionAge: 300 * time.Millisecond}})
	var dials atomic.Int32
	goaways := make(chan goAway, 16)
	conn, err := grpc.NewClient("passthrough:///onnxserve",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(spyDialer(e.conn.Target(), &dials, goaways)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := inference.NewGRPCInferenceServiceClient(conn)
	ctx := testCtx(t)

	if _, err := client.ModelInfer(ctx, simpleRequest("first")); err != nil {
		t.Fatal(err)
	}
	inflight := make(chan error, 1)
	go func() {
		_, err := client.ModelInfer(ctx, gateRequest("gate", 1))
		inflight <- err
	}()
	waitStarted(t, e.gate, 1)

	// Calls keep coming while the connection ages out.
	var calls int
	deadline := time.After(defaultTestTimeout)
	var got goAway
wait:
	for {
		select {
		case got = <-goaways:
			break wait
		case <-deadline:
			t.Fatal("no GOAWAY within the test timeout")
		default:
		}
		if _, err := client.ModelInfer(ctx, simpleRequest("during")); err != nil {
			t.Fatalf("call %d while the connection aged out: %v", calls, err)
		}
		calls++
	}
	if got.code != http2.ErrCodeNo {
		t.Fatalf("GOAWAY code %v (%q), want NO_ERROR", got.code, got.debug)
	}
	// The call in flight is not cut: it finishes when the model does.
	select {
	case err := <-inflight:
		t.Fatalf("the call in flight ended before its model run did: %v", err)
	case <-time.After(defaultTestShortTimeout):
	}
	// New calls go over a new connection.
	for i := range 20 {
		if _, err := client.ModelInfer(ctx, simpleRequest("after")); err != nil {
			t.Fatalf("call %d after the GOAWAY: %v", i, err)
		}
	}
	if n := dials.Load(); n < 2 {
		t.Fatalf("client dialled %d connection(s), want a second one after the GOAWAY", n)
	}
	e.gate.open(1)
	select {
	case err := <-inflight:
		if err != nil {
			t.Fatalf("the call in flight at the GOAWAY failed: %v", err)
		}
	case <-time.After(defaultTestTimeout):
		t.Fatal("the call in flight never finished")
	}
	t.Logf("%d calls while ageing, %d connections", calls, dials.Load())
}

// TestKeepaliveEnforcement: a client pinging more often than the policy
// allows is sent GOAWAY too_many_pings and disconnected, so a
// misconfigured client cannot keep the server busy answering pings.
func TestKeepaliveEnforcement(t *testing.T) {
	e := newEnv(t, Config{KeepalivePolicy: keepalive.EnforcementPolicy{MinTime: time.Hour, PermitWithoutStream: true}})
	c, err := net.Dial("tcp", e.conn.Target())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(time.Now().Add(defaultTestTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Writes go on in their own goroutine: the server may close the
	// connection before the last ping is written.
	go func() {
		for i := range 10 {
			if fr.WritePing(false, [8]byte{byte(i)}) != nil {
				return
			}
		}
	}()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) {
				t.Fatal("connection closed without a GOAWAY")
			}
			t.Fatalf("no GOAWAY: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeEnhanceYourCalm || string(g.DebugData()) != "too_many_pings" {
				t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", g.ErrCode, g.DebugData())
			}
			return
		}
	}
}
