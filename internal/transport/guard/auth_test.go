package guard

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/transport"
)

func TestAuthorizeAdmin(t *testing.T) {
	loop4 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	loop6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 5000}
	remote := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5000}
	unix := &net.UnixAddr{Name: "/run/onnxserve.sock", Net: "unix"}
	tests := []struct {
		name     string
		token    string
		loopback bool // allowLoopback
		header   string
		addr     net.Addr
		want     error  // nil = allowed
		names    string // a flag the refusal must name
	}{
		{"token ok", "s3cret", false, "Bearer s3cret", remote, nil, ""},
		{"token ok lowercase scheme", "s3cret", false, "bearer s3cret", remote, nil, ""},
		{"token ok from loopback", "s3cret", false, "Bearer s3cret", loop4, nil, ""},
		{"token wrong", "s3cret", false, "Bearer nope", remote, transport.ErrUnauthenticated, ""},
		{"token prefix only", "s3cret", false, "Bearer s3cre", loop4, transport.ErrUnauthenticated, ""},
		{"token longer", "s3cret", false, "Bearer s3cret2", loop4, transport.ErrUnauthenticated, ""},
		{"token missing", "s3cret", false, "", loop4, transport.ErrUnauthenticated, ""},
		{"token wrong scheme", "s3cret", false, "Basic s3cret", loop4, transport.ErrUnauthenticated, ""},
		{"token bare", "s3cret", false, "s3cret", loop4, transport.ErrUnauthenticated, ""},
		{"no token loopback v4", "", true, "", loop4, nil, ""},
		{"no token loopback v6", "", true, "", loop6, nil, ""},
		{"no token unix socket", "", true, "", unix, nil, ""},
		{"no token remote", "", true, "", remote, serving.ErrUnauthorized, ""},
		{"no token remote with header", "", true, "Bearer anything", remote, serving.ErrUnauthorized, ""},
		{"no token unknown peer", "", true, "", nil, serving.ErrUnauthorized, ""},
		{"no token, loopback not allowed", "", false, "", loop4, serving.ErrUnauthorized, "--admin-token-file"},
		{"no token, loopback not allowed, names the opt-in", "", false, "", loop4, serving.ErrUnauthorized, "--admin-allow-loopback"},
		{"no token, Istio sidecar address", "", false, "", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 6), Port: 5000}, serving.ErrUnauthorized, "--admin-token-file"},
		{"no token, unix socket not allowed", "", false, "", unix, serving.ErrUnauthorized, "--admin-token-file"},
		{"no token remote names the token flag", "", true, "", remote, serving.ErrUnauthorized, "--admin-token-file"},
		{"token ignores allowLoopback", "s3cret", true, "", loop4, transport.ErrUnauthenticated, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := AuthorizeAdmin(tt.token, tt.loopback, tt.header, tt.addr)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("AuthorizeAdmin = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("AuthorizeAdmin = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.names) {
				t.Errorf("refusal %q does not name %s", err, tt.names)
			}
			_, code := transport.Status(err)
			wantCode := map[error]int{transport.ErrUnauthenticated: 401, serving.ErrUnauthorized: 403}[tt.want]
			if code != wantCode {
				t.Fatalf("transport.Status(%v) = %d, want %d", err, code, wantCode)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	set := NewTokens([]string{"alpha", "", "beta"})
	if set.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (empty tokens skipped)", set.Len())
	}
	tests := []struct {
		header string
		want   int // -1: refused
	}{
		{"Bearer alpha", 0},
		{"bearer beta", 1},
		{"  Bearer   beta  ", 1},
		{"Bearer gamma", -1},
		{"Bearer alph", -1},
		{"Bearer alphaa", -1},
		{"Basic alpha", -1},
		{"alpha", -1},
		{"Bearer", -1},
		{"", -1},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			got, err := set.Match(tt.header)
			if tt.want < 0 {
				if !errors.Is(err, transport.ErrUnauthenticated) {
					t.Fatalf("Match = %d, %v; want transport.ErrUnauthenticated", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Match = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	var none *Tokens
	if _, err := none.Match("Bearer alpha"); !errors.Is(err, transport.ErrUnauthenticated) {
		t.Errorf("a nil set accepted a token: %v", err)
	}
	if NewTokens([]string{""}) != nil {
		t.Error("a set of no tokens should be nil")
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct {
		name  string
		index int
		addr  net.Addr
		want  string
	}{
		{"token wins", 3, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 9}, "token:3"},
		{"ip without port", -1, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 9}, "10.0.0.1"},
		{"ipv6", -1, &net.TCPAddr{IP: net.IPv6loopback, Port: 9}, "::1"},
		{"other address", -1, &net.UnixAddr{Name: "/run/s.sock", Net: "unix"}, "/run/s.sock"},
		{"unknown", -1, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClientKey(tt.index, tt.addr); got != tt.want {
				t.Fatalf("ClientKey = %q, want %q", got, tt.want)
			}
		})
	}
}
