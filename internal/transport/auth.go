package transport

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"strings"

	"github.com/onnxserve/onnxserve/internal/serving"
)

// AuthorizeAdmin decides whether a management call may proceed. With a
// configured token, header must be "Bearer <token>" (the scheme is
// case-insensitive) and anything else is ErrUnauthenticated. Without a token
// the management API is open only to callers on the same host: loopback TCP
// peers and Unix sockets; any other peer gets serving.ErrUnauthorized.
//
// header is the Authorization header (HTTP) or the "authorization" metadata
// value (gRPC); remote is the peer's address and may be nil when unknown,
// which is refused.
func AuthorizeAdmin(token, header string, remote net.Addr) error {
	if token != "" {
		scheme, got, ok := strings.Cut(strings.TrimSpace(header), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return ErrUnauthenticated
		}
		// Comparing digests keeps the comparison constant-time in the
		// token's length too.
		want := sha256.Sum256([]byte(token))
		have := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if subtle.ConstantTimeCompare(want[:], have[:]) != 1 {
			return ErrUnauthenticated
		}
		return nil
	}
	if isLocal(remote) {
		return nil
	}
	return fmt.Errorf("management API without an admin token accepts only loopback callers, not %v: %w", remote, serving.ErrUnauthorized)
}

func isLocal(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	case nil:
		return false
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
