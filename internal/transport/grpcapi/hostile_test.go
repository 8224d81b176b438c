package grpcapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// rawCall is one gRPC call written frame by frame, so a test can send what
// no gRPC client sends: a malformed message, a message cut short.
type rawCall struct {
	t  *testing.T
	c  net.Conn
	fr *http2.Framer
}

// startRawCall opens a connection to addr and sends the headers of a call
// to method, with header pairs added.
func startRawCall(t *testing.T, addr, method string, header ...string) *rawCall {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(defaultTestTimeout))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	fields := append([]string{":method", "POST", ":scheme", "http", ":path", method, ":authority", "x",
		"content-type", "application/grpc", "te", "trailers"}, header...)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	return &rawCall{t: t, c: c, fr: fr}
}

// send writes a gRPC message frame: the flag, the declared length and
// payload (which may be shorter than declared).
func (r *rawCall) send(compressed bool, declared int, payload []byte, end bool) {
	r.t.Helper()
	msg := make([]byte, 5, 5+len(payload))
	if compressed {
		msg[0] = 1
	}
	binary.BigEndian.PutUint32(msg[1:], uint32(declared))
	msg = append(msg, payload...)
	if err := r.fr.WriteData(1, end, msg); err != nil {
		r.t.Fatal(err)
	}
}

// status reads frames until the call's grpc-status arrives and returns it.
func (r *rawCall) status() codes.Code {
	r.t.Helper()
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			r.t.Fatalf("no grpc-status before %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = r.fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				r.t.Fatal(err)
			}
			for _, hf := range fields {
				if hf.Name == "grpc-status" {
					n, _ := strconv.Atoi(hf.Value)
					return codes.Code(n)
				}
			}
		case *http2.RSTStreamFrame:
			r.t.Fatalf("stream reset (%v) without a grpc-status", f.ErrCode)
		case *http2.GoAwayFrame:
			r.t.Fatalf("GOAWAY (%v) without a grpc-status", f.ErrCode)
		}
	}
}

func TestMalformedMessageIsInvalidArgument(t *testing.T) {
	e := newEnv(t, Config{})
	addr := e.conn.Target()
	for _, tc := range []struct {
		name       string
		method     string
		compressed bool
		payload    []byte
	}{
		{"not protobuf", inference.GRPCInferenceService_ModelInfer_FullMethodName, false, []byte{0xff, 0xff}},
		{"invalid UTF-8", inference.GRPCInferenceService_ModelInfer_FullMethodName, false, []byte{0x0a, 0x02, 0xff, 0xfe}},
		{"stream", inference.GRPCInferenceService_ModelStreamInfer_FullMethodName, false, []byte{0xff, 0xff}},
		{"metadata call", inference.GRPCInferenceService_ModelMetadata_FullMethodName, false, []byte{0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRawCall(t, addr, tc.method)
			r.send(tc.compressed, len(tc.payload), tc.payload, true)
			if code := r.status(); code != codes.InvalidArgument {
				t.Fatalf("grpc-status %v, want InvalidArgument", code)
			}
		})
	}
}

func TestStalledMessageIsCutOff(t *testing.T) {
	e := newEnv(t, Config{RecvTimeout: 200 * time.Millisecond})
	r := startRawCall(t, e.conn.Target(), inference.GRPCInferenceService_ModelInfer_FullMethodName)
	r.send(false, 100, make([]byte, 99), false) // one byte short, forever
	if code := r.status(); code != codes.DeadlineExceeded {
		t.Fatalf("grpc-status %v, want DeadlineExceeded", code)
	}
}

// TestStopCutsStalledMessage: graceful stop does not wait the whole drain
// timeout for a message that will never complete.
func TestStopCutsStalledMessage(t *testing.T) {
	e := newEnv(t, Config{})
	r := startRawCall(t, e.conn.Target(), inference.GRPCInferenceService_ModelInfer_FullMethodName)
	r.send(false, 100, make([]byte, 99), false)
	// Wait until the server has the call: a good call on the same server
	// is answered after it, in order.
	if _, err := e.client.ServerLive(testCtx(t), &inference.ServerLiveRequest{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	e.server.Stop(ctx)
	if ctx.Err() != nil {
		t.Fatal("Stop waited out its deadline for a stalled message")
	}
}

// TestAuthBeforeDecode: a call without a valid token is refused on its
// headers; the server reads no message for it (here, one that never
// completes and could not be decoded).
func TestAuthBeforeDecode(t *testing.T) {
	e := newEnv(t, Config{InferenceTokens: guard.NewTokens([]string{"alpha"})})
	for _, header := range [][]string{nil, {"authorization", "Bearer wrong"}} {
		r := startRawCall(t, e.conn.Target(), inference.GRPCInferenceService_ModelInfer_FullMethodName, header...)
		r.send(false, 1<<20, []byte{0xff, 0xff}, false)
		if code := r.status(); code != codes.Unauthenticated {
			t.Fatalf("header %q: grpc-status %v, want Unauthenticated", header, code)
		}
	}
	// With the token, the same message is read (and found malformed).
	r := startRawCall(t, e.conn.Target(), inference.GRPCInferenceService_ModelInfer_FullMethodName, "authorization", "Bearer alpha")
	r.send(false, 2, []byte{0xff, 0xff}, true)
	if code := r.status(); code != codes.InvalidArgument {
		t.Fatalf("with the token: grpc-status %v, want InvalidArgument", code)
	}
}

// TestReceivedCallsLeaveNoGuard: a call whose message arrived holds no
// receive guard afterwards, unary or streaming, so answered calls leave
// nothing armed behind them however fast they come.
func TestReceivedCallsLeaveNoGuard(t *testing.T) {
	e := newEnv(t, Config{})
	for range 20 {
		if _, err := e.client.ModelInfer(testCtx(t), simpleRequest("")); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := e.client.ModelStreamInfer(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(simpleRequest("")); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	e.server.guards.mu.Lock()
	armed := e.server.guards.head != nil
	e.server.guards.mu.Unlock()
	if armed {
		t.Fatal("a call that got its message still holds an armed receive guard")
	}
}
