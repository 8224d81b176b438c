package grpcapi

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/onnxserve/onnxserve/internal/transport"
)

// DefaultRecvTimeout bounds receiving a call's request message, like
// HTTP's read timeout bounds a request body.
const DefaultRecvTimeout = 70 * time.Second

// errRecvTimeout and errRecvShutdown are why a call's receive was cut off.
var (
	errRecvTimeout  = errors.New("the request message did not arrive within the receive timeout")
	errRecvShutdown = errors.New("the server is shutting down")
)

// tap runs for every call as soon as its headers arrive, before any of its
// message is read: a call without a valid inference token is refused
// there, so an unauthenticated client costs no body reading and no
// decoding. It also starts the call's receive guard (recvGuard).
func (s *Server) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if s.cfg.InferenceTokens != nil && !openMethods[info.FullMethodName] {
		var header string
		if v := info.Header.Get(AuthorizationMetadata); len(v) > 0 {
			header = v[0]
		}
		i, err := s.cfg.InferenceTokens.Match(header)
		if err != nil {
			return ctx, transport.GRPCError(err)
		}
		ctx = context.WithValue(ctx, tokenKey{}, i)
	}
	if s.cfg.RecvTimeout > 0 {
		ctx = s.guardRecv(ctx)
	}
	return ctx, nil
}

// recvGuard cuts off a call whose first request message does not arrive in
// Config.RecvTimeout, or that is still receiving it when Stop begins: a
// client that stalls mid-message would otherwise hold the call, its
// buffered bytes and graceful shutdown forever. It stops once the first
// message is in (or failed); a stream's later messages are not timed, as
// a stream may rightly idle between them. Safe for concurrent use.
type recvGuard struct {
	timer    *time.Timer
	stopQuit func() bool
	stopped  atomic.Bool
}

func (g *recvGuard) stop() {
	if g.stopped.CompareAndSwap(false, true) {
		g.timer.Stop()
		g.stopQuit()
	}
}

// recvGuardKey is the context key of a call's recvGuard.
type recvGuardKey struct{}

// recvContext is a call's context while its guard may cut it off; the
// receive timeout reads as a deadline, so the client gets
// DEADLINE_EXCEEDED as it would from HTTP's read timeout.
type recvContext struct{ context.Context }

func (c recvContext) Err() error {
	err := c.Context.Err()
	if err != nil && errors.Is(context.Cause(c.Context), errRecvTimeout) {
		return context.DeadlineExceeded
	}
	return err
}

func (s *Server) guardRecv(ctx context.Context) context.Context {
	g := &recvGuard{}
	ctx, cancel := context.WithCancelCause(context.WithValue(ctx, recvGuardKey{}, g))
	g.timer = time.AfterFunc(s.cfg.RecvTimeout, func() { cancel(errRecvTimeout) })
	g.stopQuit = context.AfterFunc(s.quitCtx, func() { cancel(errRecvShutdown) })
	return recvContext{ctx}
}

// recvStream stops a call's receive guard once its first message is in,
// and answers a stream's malformed message INVALID_ARGUMENT.
func (s *Server) recvStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	g, _ := ss.Context().Value(recvGuardKey{}).(*recvGuard)
	if g != nil {
		defer g.stop()
	}
	return h(srv, &guardedStream{ServerStream: ss, g: g, codec: s.codec})
}

// guardedStream stops its guard, if any, when its first RecvMsg returns,
// and fails a RecvMsg whose message could not be decoded.
type guardedStream struct {
	grpc.ServerStream
	g     *recvGuard
	codec *codec
}

func (gs *guardedStream) RecvMsg(m any) error {
	err := gs.ServerStream.RecvMsg(m)
	if gs.g != nil {
		gs.g.stop()
	}
	if err == nil {
		err = gs.codec.decodeError(m)
	}
	return err
}

// decodeFailures remembers, per message, why the codec could not decode
// it. grpc-go answers a codec error INTERNAL before any server code runs,
// though a malformed message (bad protobuf, invalid UTF-8) is the
// client's fault; so the codec reports success with an empty message and
// leaves the error here, and the interceptors answer it INVALID_ARGUMENT
// (decodeError). Safe for concurrent use.
type decodeFailures struct {
	mu   sync.Mutex
	errs map[any]error
	n    atomic.Int64 // len(errs), read without the lock
}

// failed records err as why msg (a pointer) could not be decoded.
func (d *decodeFailures) failed(msg any, err error) {
	d.mu.Lock()
	if d.errs == nil {
		d.errs = map[any]error{}
	}
	d.errs[msg] = err
	d.n.Store(int64(len(d.errs)))
	d.mu.Unlock()
}

// decodeError returns, once, the INVALID_ARGUMENT status for msg when it
// could not be decoded (RESOURCE_EXHAUSTED when it was refused over the
// memory budget or a limit), else nil. Free while no decode has failed.
func (d *decodeFailures) decodeError(msg any) error {
	if d.n.Load() == 0 {
		return nil
	}
	d.mu.Lock()
	err, ok := d.errs[msg]
	delete(d.errs, msg)
	d.n.Store(int64(len(d.errs)))
	d.mu.Unlock()
	if !ok {
		return nil
	}
	if errors.Is(err, transport.ErrMemoryBudget) || errors.Is(err, transport.ErrLimit) {
		return statusError{err} // not malformed: refused before decoding
	}
	return status.Error(codes.InvalidArgument, "malformed request message: "+strings.TrimPrefix(err.Error(), "proto: "))
}
