package guard

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// LimitConnections names the connection limit in errors, as the command's
// flag spells it.
const LimitConnections = "max-connections"

// rejectTimeout bounds the whole exchange with a connection over the
// limit, so a client that sends nothing cannot hold a rejecter.
const rejectTimeout = 2 * time.Second

// maxRejecting bounds the connections being rejected at once; beyond it a
// connection is closed without an answer, so a flood costs no more than
// that many goroutines.
const maxRejecting = 64

// LimitListener returns a listener that keeps at most max accepted
// connections open at once. A connection accepted beyond that never reaches
// the caller: it is handed, in a goroutine of its own, to reject, which
// should tell the client why and must close it. reject may be nil, which
// closes at once. Closing the listener does not close connections it
// handed out. max <= 0 means no limit: ln is returned as it is. The
// listener is safe for concurrent use.
func LimitListener(ln net.Listener, max int, reject func(net.Conn)) net.Listener {
	if max <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, max: int64(max), reject: reject}
}

type limitListener struct {
	net.Listener
	max       int64
	open      atomic.Int64
	rejecting atomic.Int64
	reject    func(net.Conn)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		if l.reject == nil || l.rejecting.Add(1) > maxRejecting {
			if l.reject != nil {
				l.rejecting.Add(-1)
			}
			_ = c.Close()
			continue
		}
		go func() {
			defer l.rejecting.Add(-1)
			l.reject(c)
		}()
	}
}

// limitConn gives its slot back exactly once, on its first Close.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// CloseWrite half-closes the connection when the connection beneath can,
// for a graceful close that lets the client read a last answer.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// RejectConn refuses a connection that will not be served, telling the
// client why: it completes the TLS handshake when tlsConfig is not nil (a
// client can read nothing before), lets answer talk to the client, then
// closes the connection gracefully, so that the client reads the answer
// rather than a reset. The whole exchange is bounded by a short deadline.
func RejectConn(c net.Conn, tlsConfig *tls.Config, answer func(net.Conn) error) {
	defer c.Close()
	raw := c
	_ = c.SetDeadline(time.Now().Add(rejectTimeout))
	if tlsConfig != nil {
		tc := tls.Server(c, tlsConfig)
		if err := tc.Handshake(); err != nil {
			return
		}
		c = tc
	}
	if err := answer(c); err != nil {
		return
	}
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	if cw, ok := raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	// Unread data at close makes the kernel send a reset, which can
	// destroy the answer in flight: read what the client still sends.
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<16))
}

// ReplyAfterRequest returns an answer for RejectConn that reads the
// client's first bytes (an HTTP request head) and writes reply.
func ReplyAfterRequest(reply []byte) func(net.Conn) error {
	return func(c net.Conn) error {
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err != nil {
			return err
		}
		_, err := c.Write(reply)
		return err
	}
}

// RejectLog warns about connections refused over the connection limit at
// most once a second, so a flood of them does not flood the log too. The
// zero value is ready; it is safe for concurrent use.
type RejectLog struct {
	last atomic.Int64 // unix nanoseconds of the last line
}

// Warn logs one refused connection from remote, unless a line went out in
// the last second.
func (r *RejectLog) Warn(log *zap.Logger, limit int, remote net.Addr) {
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(time.Second) || !r.last.CompareAndSwap(last, now) {
		return
	}
	log.Warn("connection refused: connection limit reached", zap.Int(LimitConnections, limit), zap.Stringer("remote", remote))
}
