package httpapi

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Bounds of a lingering close: how long and how much of the rest of a
// refused request the server reads before it closes.
const (
	lingerTimeout = time.Second
	lingerBytes   = 4 << 20
)

// lingerConn can close gracefully. The server refuses some requests
// before reading them whole (a body over the size limit); closing at once
// would leave the client's bytes unread, the kernel would answer them with
// a reset, and the client would see that reset instead of the 413. Marked
// with lingerOnClose, Close half-closes, reads and discards what the client
// still sends, within bounds, and then closes. It is safe for concurrent
// use as a net.Conn is.
type lingerConn struct {
	net.Conn
	linger atomic.Bool

	// What shutdown needs to know (shutdown.go); tracker may be nil.
	tracker      *connTracker
	phase        atomic.Int32
	readingSince atomic.Int64 // Unix nanoseconds
	spared       atomic.Bool
	used         atomic.Bool // a request has begun arriving
}

func (c *lingerConn) Close() error {
	if c.spare() {
		return nil
	}
	if c.tracker != nil {
		c.tracker.remove(c)
	}
	if c.linger.Load() {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		if c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout)) == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, lingerBytes))
		}
	}
	return c.Conn.Close()
}

// lingerListener hands out lingerConns, known to tracker when it is not
// nil.
type lingerListener struct {
	net.Listener
	tracker *connTracker
}

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &lingerConn{Conn: c, tracker: l.tracker}
	if l.tracker != nil {
		l.tracker.add(lc)
	}
	return lc, nil
}

// lingerOnClose asks for a graceful close of the connection of a request
// the server answers without reading it whole.
func lingerOnClose(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*lingerConn); ok {
		lc.linger.Store(true)
	}
}
