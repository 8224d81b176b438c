package transport

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

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
