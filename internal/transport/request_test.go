package transport

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onnxserve/onnxserve/internal/tensor"
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

func TestWithTimeoutMicros(t *testing.T) {
	for _, tc := range []struct {
		name     string
		micros   int64
		deadline bool
		invalid  bool
	}{
		{"zero means none", 0, false, false},
		{"one second", 1_000_000, true, false},
		// Beyond math.MaxInt64/1000 the product used to overflow into a
		// deadline in the past: an instant DEADLINE_EXCEEDED.
		{"just past the duration range", 9_300_000_000_000_000, true, false},
		{"max int64", math.MaxInt64, true, false},
		{"negative", -1, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel, err := WithTimeoutMicros(context.Background(), tc.micros)
			defer cancel()
			if tc.invalid {
				if !errors.Is(err, tensor.ErrInvalid) {
					t.Fatalf("err = %v, want tensor.ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ctx.Err() != nil {
				t.Fatalf("context already done: %v", ctx.Err())
			}
			d, ok := ctx.Deadline()
			if ok != tc.deadline {
				t.Fatalf("deadline set = %v, want %v", ok, tc.deadline)
			}
			if ok && !d.After(time.Now()) {
				t.Fatalf("deadline %v is not in the future", d)
			}
		})
	}
}
