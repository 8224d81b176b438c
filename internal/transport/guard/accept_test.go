package guard

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// errListener fails its accepts with the errors in errs, in order, then
// accepts from the listener beneath.
type errListener struct {
	net.Listener
	errs []error
}

func (l *errListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

const testTimeout = 10 * time.Second

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

func TestRetryAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	core, logs := observer.New(zap.WarnLevel)
	errs := []error{acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE), acceptErr(syscall.ENFILE), acceptErr(syscall.ECONNABORTED), acceptErr(syscall.ENOBUFS)}
	rl := RetryAccept(&errListener{Listener: ln, errs: errs}, zap.New(core))
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan error, 1)
	go func() {
		sc, err := rl.Accept()
		if err == nil {
			sc.Close()
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("accept returned %v, want the connection after the transient errors", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("accept never returned")
	}
	if n := logs.FilterMessageSnippet("out of file descriptors").Len(); n != 1 {
		t.Fatalf("%d warnings about descriptors, want 1 (rate-limited)", n)
	}
}

func TestRetryAcceptPassesOtherErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fatal := acceptErr(syscall.EINVAL)
	rl := RetryAccept(&errListener{Listener: ln, errs: []error{fatal}}, nil)
	if _, err := rl.Accept(); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("accept returned %v, want EINVAL passed through", err)
	}
}

// exhaustedListener always fails with EMFILE and reports each try.
type exhaustedListener struct {
	net.Listener
	tries chan struct{}
}

func (l *exhaustedListener) Accept() (net.Conn, error) {
	select {
	case l.tries <- struct{}{}:
	default:
	}
	return nil, acceptErr(syscall.EMFILE)
}

func TestRetryAcceptCloseEndsBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tries := make(chan struct{})
	rl := RetryAccept(&exhaustedListener{Listener: ln, tries: tries}, nil)
	got := make(chan error, 1)
	go func() { _, err := rl.Accept(); got <- err }()
	for range 4 { // three backoffs have begun: 5, 10, 20 ms
		select {
		case <-tries:
		case <-time.After(testTimeout):
			t.Fatal("accept was not retried")
		}
	}
	if err := rl.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("accept after close returned a connection")
		}
	case <-time.After(testTimeout):
		t.Fatal("close did not end the backoff")
	}
}
