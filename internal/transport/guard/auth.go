package guard

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/transport"
)

// AuthorizeAdmin decides whether a management call may proceed. With a
// configured token, header must be "Bearer <token>" (the scheme is
// case-insensitive) and anything else is transport.ErrUnauthenticated.
// Without a token the management API is closed (serving.ErrUnauthorized,
// with a message naming the flags that open it) unless allowLoopback admits
// callers on the same host: loopback TCP peers and Unix sockets. Loopback
// is no proof of identity in a pod: sidecars (Istio's proxy connects from
// 127.0.0.6, Knative's queue-proxy from 127.0.0.1) forward every client's
// calls from there, so allowLoopback is for a developer's machine.
//
// header is the Authorization header (HTTP) or the "authorization" metadata
// value (gRPC); remote is the peer's address and may be nil when unknown,
// which is refused.
func AuthorizeAdmin(token string, allowLoopback bool, header string, remote net.Addr) error {
	if token != "" {
		want := sha256.Sum256([]byte(token))
		have, ok := bearerDigest(header)
		if !ok || subtle.ConstantTimeCompare(want[:], have[:]) != 1 {
			return transport.ErrUnauthenticated
		}
		return nil
	}
	if !allowLoopback {
		return fmt.Errorf("management API is closed: the server has no admin token; start it with --admin-token-file (or, on a developer's machine, --admin-allow-loopback): %w", serving.ErrUnauthorized)
	}
	if isLocal(remote) {
		return nil
	}
	return fmt.Errorf("management API without an admin token accepts only loopback callers (--admin-allow-loopback), not %v; set --admin-token-file to call it from elsewhere: %w", remote, serving.ErrUnauthorized)
}

// bearerDigest returns the SHA-256 of the token in a "Bearer <token>"
// header (the scheme is case-insensitive). Comparing digests keeps the
// comparison constant-time in the token's length too.
func bearerDigest(header string) ([sha256.Size]byte, bool) {
	scheme, got, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256([]byte(strings.TrimSpace(got))), true
}

// Tokens is a set of bearer tokens, any one of which grants access; it
// keeps only their digests. Several tokens let each client have its own,
// which the rate limiter then tells apart, and let a token be rotated. A
// Tokens never changes after NewTokens, so it is safe for concurrent use.
type Tokens struct {
	digests [][sha256.Size]byte
}

// NewTokens returns the set of the given tokens; empty strings are
// skipped. It returns nil, which accepts nothing, when none is left.
func NewTokens(tokens []string) *Tokens {
	var t Tokens
	for _, tok := range tokens {
		if tok != "" {
			t.digests = append(t.digests, sha256.Sum256([]byte(tok)))
		}
	}
	if len(t.digests) == 0 {
		return nil
	}
	return &t
}

// Len is the number of tokens in the set.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.digests)
}

// Match returns the index of the token that header ("Bearer <token>")
// presents, or transport.ErrUnauthenticated. It compares against every token in
// constant time, so timing tells neither the token nor which one matched.
func (t *Tokens) Match(header string) (int, error) {
	have, ok := bearerDigest(header)
	if t == nil || !ok {
		return -1, transport.ErrUnauthenticated
	}
	found, index := 0, 0
	for i, want := range t.digests {
		eq := subtle.ConstantTimeCompare(want[:], have[:])
		index = subtle.ConstantTimeSelect(eq, i, index)
		found |= eq
	}
	if found != 1 {
		return -1, transport.ErrUnauthenticated
	}
	return index, nil
}

// ClientKey names the caller for per-client limits: the index of its
// token when inference calls need one (a token identifies a client better
// than an address behind shared NAT), else the peer's IP address.
func ClientKey(tokenIndex int, remote net.Addr) string {
	if tokenIndex >= 0 {
		return "token:" + strconv.Itoa(tokenIndex)
	}
	switch a := remote.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case nil:
		return ""
	}
	host, _, err := net.SplitHostPort(remote.String())
	if err != nil {
		return remote.String()
	}
	return host
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
