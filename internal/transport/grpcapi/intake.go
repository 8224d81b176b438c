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
// a stream may rightly idle between them.
//
// A guard is also its call's context (ctx), so a call pays one allocation
// for both, plus its cancel context. Armed guards sit in their server's
// list (recvGuards), which one reaper goroutine walks (reapRecv) instead of
// a timer and a shutdown hook per call: measured, those cost eleven
// allocations per call, and the list holds only the calls still receiving.
type recvGuard struct {
	ctx      recvContext
	cancel   context.CancelFunc
	deadline time.Time
	// why is set, before cancel, to the reason the call was cut off.
	why atomic.Pointer[error]

	// prev and next link the armed guards; guarded by recvGuards.mu.
	prev, next *recvGuard
	armed      bool
}

// recvGuards is the list of a server's armed guards.
type recvGuards struct {
	mu   sync.Mutex
	head *recvGuard
}

func (l *recvGuards) add(g *recvGuard) {
	l.mu.Lock()
	g.next = l.head
	if l.head != nil {
		l.head.prev = g
	}
	l.head, g.armed = g, true
	l.mu.Unlock()
}

// remove unlinks g, reporting whether it was armed.
func (l *recvGuards) remove(g *recvGuard) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !g.armed {
		return false
	}
	if g.prev != nil {
		g.prev.next = g.next
	} else {
		l.head = g.next
	}
	if g.next != nil {
		g.next.prev = g.prev
	}
	g.prev, g.next, g.armed = nil, nil, false
	return true
}

// cutOff unlinks and cancels every guard whose deadline is before now, or
// every guard when all is set.
func (l *recvGuards) cutOff(now time.Time, all bool, why error) {
	var cut []*recvGuard
	l.mu.Lock()
	for g := l.head; g != nil; {
		next := g.next
		if all || g.deadline.Before(now) {
			if g.prev != nil {
				g.prev.next = g.next
			} else {
				l.head = g.next
			}
			if g.next != nil {
				g.next.prev = g.prev
			}
			g.prev, g.next, g.armed = nil, nil, false
			cut = append(cut, g)
		}
		g = next
	}
	l.mu.Unlock()
	for _, g := range cut {
		g.why.Store(&why)
		g.cancel()
	}
}

// recvGuardKey is the context key of a call's recvGuard.
type recvGuardKey struct{}

// recvContext is a call's context while its guard may cut it off: it
// carries the guard, and the receive timeout reads as a deadline, so the
// client gets DEADLINE_EXCEEDED as it would from HTTP's read timeout.
type recvContext struct {
	context.Context
	g *recvGuard
}

func (c *recvContext) Value(key any) any {
	if key == (recvGuardKey{}) {
		return c.g
	}
	return c.Context.Value(key)
}

func (c *recvContext) Err() error {
	err := c.Context.Err()
	if why := c.g.why.Load(); err != nil && why != nil && *why == errRecvTimeout {
		return context.DeadlineExceeded
	}
	return err
}

func (s *Server) guardRecv(ctx context.Context) context.Context {
	g := &recvGuard{deadline: time.Now().Add(s.cfg.RecvTimeout)}
	g.ctx.Context, g.cancel = context.WithCancel(ctx)
	g.ctx.g = g
	s.guards.add(g)
	select {
	case <-s.quit:
		// Stop began between the check and the add: cut it off here, as
		// Stop's own sweep may have missed it.
		s.guards.cutOff(time.Time{}, true, errRecvShutdown)
	default:
	}
	return &g.ctx
}

// stopRecvGuard disarms the guard of the call whose context is ctx, if any:
// its message is in.
func stopRecvGuard(s *Server, ctx context.Context) {
	if g, _ := ctx.Value(recvGuardKey{}).(*recvGuard); g != nil {
		s.guards.remove(g)
	}
}

// reapRecv cuts off the calls whose receive timeout passed, checking a few
// times per timeout, until quit closes (then it cuts off every call still
// receiving) or served does (Serve returned).
func (s *Server) reapRecv(served <-chan struct{}) {
	tick := min(max(s.cfg.RecvTimeout/4, time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.guards.cutOff(now, false, errRecvTimeout)
		case <-s.quit:
			s.guards.cutOff(time.Time{}, true, errRecvShutdown)
			return
		case <-served:
			return
		}
	}
}

// recvStream stops a call's receive guard once its first message is in,
// and answers a stream's malformed message INVALID_ARGUMENT.
func (s *Server) recvStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	g, _ := ss.Context().Value(recvGuardKey{}).(*recvGuard)
	if g != nil {
		defer s.guards.remove(g)
	}
	return h(srv, &guardedStream{ServerStream: ss, g: g, guards: &s.guards, codec: s.codec})
}

// guardedStream stops its guard, if any, when its first RecvMsg returns,
// and fails a RecvMsg whose message could not be decoded.
type guardedStream struct {
	grpc.ServerStream
	g      *recvGuard
	guards *recvGuards
	codec  *codec
}

func (gs *guardedStream) RecvMsg(m any) error {
	err := gs.ServerStream.RecvMsg(m)
	if gs.g != nil {
		gs.guards.remove(gs.g)
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
// could not be decoded, else nil. Free while no decode has failed.
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
	return status.Error(codes.InvalidArgument, "malformed request message: "+strings.TrimPrefix(err.Error(), "proto: "))
}
