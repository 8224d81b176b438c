package transport

import (
	"testing"

	"github.com/google/uuid"
)

func TestRequestID(t *testing.T) {
	tests := []struct {
		name, client, header, want string
	}{
		{"client's id wins", "c-1", "h-1", "c-1"},
		{"header when no client id", "", "h-1", "h-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RequestID(tt.client, tt.header); got != tt.want {
				t.Errorf("RequestID(%q, %q) = %q, want %q", tt.client, tt.header, got, tt.want)
			}
		})
	}
	t.Run("generated", func(t *testing.T) {
		prev := ""
		for range 100 {
			id := RequestID("", "")
			u, err := uuid.Parse(id)
			if err != nil || u.Version() != 7 {
				t.Fatalf("generated id %q is not a UUID v7 (%v)", id, err)
			}
			if id <= prev {
				t.Fatalf("generated ids not increasing: %q after %q", id, prev)
			}
			prev = id
		}
	})
}

func TestRequestIDInto(t *testing.T) {
	var buf [RequestIDLen]byte
	id := RequestIDInto("", "", &buf)
	if u, err := uuid.Parse(id); err != nil || u.Version() != 7 || u.String() != id {
		t.Fatalf("RequestIDInto made %q, not a canonical UUID v7 (%v)", id, err)
	}
	if got := RequestIDInto("c", "h", &buf); got != "c" {
		t.Errorf("client id lost: %q", got)
	}
	if got := RequestIDInto("", "h", &buf); got != "h" {
		t.Errorf("header id lost: %q", got)
	}
}
