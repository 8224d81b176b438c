package guard

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Backoff of an accept that failed for want of a resource: like net/http's,
// 5ms doubling to a second, reset by the next accepted connection.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// RetryAccept returns a listener whose Accept survives the errors a busy
// process recovers from: out of descriptors (EMFILE, ENFILE), out of
// kernel buffers or memory (ENOBUFS, ENOMEM), and a connection that
// vanished before it was accepted (ECONNABORTED). Such an error is not
// returned, which would stop the server for good (fasthttp treats every
// accept error as fatal), but the accept is retried after a backoff while
// the waiting connections stay queued in the kernel. A descriptor shortage
// is logged as a warning at most once a second. Any other error, and every
// error once the listener is closed, is returned as it is. Safe for
// concurrent use. log may be nil.
func RetryAccept(ln net.Listener, log *zap.Logger) net.Listener {
	if log == nil {
		log = zap.NewNop()
	}
	return &retryListener{Listener: ln, log: log, done: make(chan struct{})}
}

type retryListener struct {
	net.Listener
	log    *zap.Logger
	warned RateLimitedLog
	closed atomic.Bool
	done   chan struct{}
}

func (l *retryListener) Accept() (net.Conn, error) {
	delay := time.Duration(0)
	for {
		c, err := l.Listener.Accept()
		if err == nil || l.closed.Load() || !retryable(err) {
			return c, err
		}
		if delay == 0 {
			delay = minAcceptBackoff
		} else if delay *= 2; delay > maxAcceptBackoff {
			delay = maxAcceptBackoff
		}
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			l.warned.Do(func() {
				l.log.Warn("connections wait: the process is out of file descriptors; accepting again once some close (raise the descriptor limit or lower --"+LimitConnections+")",
					zap.Stringer("listener", l.Addr()), zap.Error(err))
			})
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
		}
	}
}

// Close closes the listener and ends a backoff in progress.
func (l *retryListener) Close() error {
	if l.closed.CompareAndSwap(false, true) {
		close(l.done)
	}
	return l.Listener.Close()
}

// retryable reports whether an accept error passes with time.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// RateLimitedLog runs a logging function at most once a second, so that a
// flood of one event does not flood the log too. The zero value is ready;
// it is safe for concurrent use.
type RateLimitedLog struct {
	last atomic.Int64 // unix nanoseconds of the last line
}

// Do runs log unless it ran in the last second.
func (r *RateLimitedLog) Do(log func()) {
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(time.Second) || !r.last.CompareAndSwap(last, now) {
		return
	}
	log()
}
