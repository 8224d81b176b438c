package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// openMethods need no inference token: health probes, which load
// balancers call without credentials, and the repository RPCs, which apply
// the management rule themselves.
var openMethods = map[string]bool{
	inference.GRPCInferenceService_ServerLive_FullMethodName:            true,
	inference.GRPCInferenceService_ServerReady_FullMethodName:           true,
	inference.GRPCInferenceService_ModelReady_FullMethodName:            true,
	inference.GRPCInferenceService_RepositoryIndex_FullMethodName:       true,
	inference.GRPCInferenceService_RepositoryModelLoad_FullMethodName:   true,
	inference.GRPCInferenceService_RepositoryModelUnload_FullMethodName: true,
	"/grpc.health.v1.Health/Check":                                      true,
	"/grpc.health.v1.Health/Watch":                                      true,
	"/grpc.health.v1.Health/List":                                       true,
}

// tokenKey is the context key of the inference token a call presented.
type tokenKey struct{}

// tokenIndex returns the index of the inference token the call presented,
// -1 for none.
func tokenIndex(ctx context.Context) int {
	if i, ok := ctx.Value(tokenKey{}).(int); ok {
		return i
	}
	return -1
}

// authenticate checks the call's inference token and returns ctx carrying
// its index.
func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	if s.cfg.InferenceTokens == nil || openMethods[method] || tokenIndex(ctx) >= 0 {
		return ctx, nil // open, or already checked by tap
	}
	i, err := s.cfg.InferenceTokens.Match(metadataValue(ctx, AuthorizationMetadata))
	if err != nil {
		return ctx, transport.GRPCError(err)
	}
	return context.WithValue(ctx, tokenKey{}, i), nil
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, &contextStream{ServerStream: ss, ctx: ctx})
}

// contextStream is a ServerStream with a derived context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *contextStream) Context() context.Context { return c.ctx }

// scrub rewrites an error's status message without host paths.
func (s *Server) scrub(err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	if msg := s.cfg.Scrub.Scrub(st.Message()); msg != st.Message() {
		return status.Error(st.Code(), msg)
	}
	return err
}

func (s *Server) scrubStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return s.scrub(h(srv, ss))
}

// clientKey names the caller of ctx for the rate limiter.
func clientKey(ctx context.Context) string {
	var remote net.Addr
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr
	}
	return guard.ClientKey(tokenIndex(ctx), remote)
}

// rejectConn refuses a connection over Config.MaxConnections the way a
// gRPC client understands: the first call on it fails with
// RESOURCE_EXHAUSTED naming the limit, and a GOAWAY ends the connection.
func (s *Server) rejectConn(c net.Conn) {
	s.rejectLog.Warn(s.log, s.cfg.MaxConnections, c.RemoteAddr())
	msg := fmt.Sprintf("connection refused: the server already holds its %s limit of %d connections; retry later", guard.LimitConnections, s.cfg.MaxConnections)
	guard.RejectConn(c, s.cfg.TLS, func(c net.Conn) error { return refuseHTTP2(c, msg) })
}

// refuseHTTP2 plays the server side of an HTTP/2 connection just long
// enough to answer the first call with a trailers-only RESOURCE_EXHAUSTED
// status carrying msg, then sends GOAWAY. A client that opens no call
// within the deadline gets the GOAWAY alone.
func refuseHTTP2(c net.Conn, msg string) error {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
		return errors.New("not an HTTP/2 client")
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		return err
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			_ = fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte(msg))
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					return err
				}
			}
		case *http2.HeadersFrame:
			var block bytes.Buffer
			enc := hpack.NewEncoder(&block)
			for _, h := range [][2]string{
				{":status", "200"},
				{"content-type", "application/grpc"},
				{"grpc-status", strconv.Itoa(int(codes.ResourceExhausted))},
				{"grpc-message", grpcMessage(msg)},
			} {
				if err := enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]}); err != nil {
					return err
				}
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
				return err
			}
			return fr.WriteGoAway(f.StreamID, http2.ErrCodeNo, []byte(msg))
		}
	}
}

// grpcMessage percent-encodes a grpc-message header value as the gRPC
// protocol requires.
func grpcMessage(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c >= ' ' && c <= '~' && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
