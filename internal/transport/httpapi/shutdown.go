package httpapi

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// uploadGrace is how long a request may still be arriving once shutdown
// has begun before its connection is cut: long enough for any request a
// client is actually sending, far shorter than the drain timeout a stalled
// upload would otherwise hold shutdown for.
const uploadGrace = time.Second

// freshGrace is how long shutdown spares a connection that has carried no
// request yet, for its first request to arrive.
const freshGrace = 250 * time.Millisecond

// sweepInterval is how often shutdown looks for stalled uploads.
const sweepInterval = 50 * time.Millisecond

// Phases of a tracked connection.
const (
	phaseIdle      int32 = iota // between requests, or before the first
	phaseReading                // a request's bytes are arriving
	phaseAnswering              // the handler runs or the answer is written
)

// connTracker knows the server's open connections and what each is doing,
// so that shutdown can cut off uploads that stall and close keep-alive
// connections only between requests. Safe for concurrent use.
type connTracker struct {
	mu       sync.Mutex
	conns    map[*lingerConn]struct{}
	stopping atomic.Bool
	// draining is set by Drain: answers close their connection.
	draining atomic.Bool
	// spareFor bounds how long a connection spared at shutdown may stay
	// open if fasthttp never closes it again.
	spareFor time.Duration
}

func newConnTracker(spareFor time.Duration) *connTracker {
	return &connTracker{conns: map[*lingerConn]struct{}{}, spareFor: spareFor}
}

func (t *connTracker) add(c *lingerConn) {
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
}

func (t *connTracker) remove(c *lingerConn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// connState follows fasthttp's view of each connection.
func (t *connTracker) connState(c net.Conn, st fasthttp.ConnState) {
	lc := asLingerConn(c)
	if lc == nil {
		return
	}
	switch st {
	case fasthttp.StateActive:
		lc.used.Store(true)
		lc.readingSince.Store(time.Now().UnixNano())
		lc.phase.Store(phaseReading)
	case fasthttp.StateIdle:
		lc.phase.Store(phaseIdle)
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		t.remove(lc)
	}
}

// answering wraps the handler: from here on the request is admitted work,
// which shutdown waits for. While draining, its answer closes the
// connection.
func (t *connTracker) answering(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if lc := asLingerConn(ctx.Conn()); lc != nil {
			lc.phase.Store(phaseAnswering)
		}
		if t.draining.Load() {
			ctx.SetConnectionClose()
		}
		h(ctx)
	}
}

// cutStalledUploads closes, until done is closed, every connection whose
// request has been arriving for longer than uploadGrace: a client that
// stalls mid-body must not hold shutdown for the whole drain timeout.
func (t *connTracker) cutStalledUploads(done <-chan struct{}) {
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	for {
		t.sweep(time.Now().Add(-uploadGrace).UnixNano())
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

func (t *connTracker) sweep(before int64) {
	t.mu.Lock()
	var cut []*lingerConn
	for c := range t.conns {
		if c.phase.Load() == phaseReading && c.readingSince.Load() < before {
			cut = append(cut, c)
		}
	}
	t.mu.Unlock()
	for _, c := range cut {
		_ = c.Conn.Close() // the request's reader fails and fasthttp moves on
	}
}

// spare reports whether a Close of c should be put off: the server is
// stopping, c is between requests, and a request has already arrived in
// the kernel's buffer that fasthttp has not read yet. Closing then would
// drop that request unanswered; fasthttp reads and answers it instead
// (with Connection: close) and closes the connection again after. Each
// connection is spared once, and closed for good after spareFor.
func (c *lingerConn) spare() bool {
	t := c.tracker
	if t == nil || !t.stopping.Load() || c.phase.Load() != phaseIdle || !c.spared.CompareAndSwap(false, true) {
		return false
	}
	wait := t.spareFor
	if !pending(c.Conn) {
		if c.used.Load() {
			return false
		}
		// A connection that has carried no request yet was opened to
		// send one: its first bytes are on their way.
		wait = freshGrace
	}
	time.AfterFunc(wait, func() { _ = c.Conn.Close() })
	return true
}

// pending reports whether bytes wait unread on c's socket, without
// reading them or blocking.
func pending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var buf [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, _ = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	return n > 0
}

// asLingerConn returns the lingerConn under c, through TLS, or nil.
func asLingerConn(c net.Conn) *lingerConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, _ := c.(*lingerConn)
	return lc
}

// backlogWait bounds how long shutdown waits for the accept queue to
// empty.
const backlogWait = 200 * time.Millisecond

// emptyBacklog shrinks ln's accept queue so that the kernel stops
// completing new connections (their clients retry the handshake and find
// the port closed: nothing written), then waits, up to backlogWait, until
// every connection already queued has been accepted. Closing a listener
// resets the connections still in its queue, and their clients may have
// written a request into them already.
func emptyBacklog(ln net.Listener) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = syscall.Listen(int(fd), 0) })
	for deadline := time.Now().Add(backlogWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		queued := false
		_ = rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 0)
			queued = err == nil && n > 0
		})
		if !queued {
			return
		}
	}
}
