package transport

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TestStatus is the table test of the one error → status mapping
// (DESIGN §1), with errors wrapped as the serving core wraps them.
func TestStatus(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("model %q version 1: %w", "m", err) }
	tests := []struct {
		name string
		err  error
		grpc codes.Code
		http int
	}{
		{"invalid tensor", wrap(tensor.Invalidf("input %q: bad", "x")), codes.InvalidArgument, 400},
		{"bad config", wrap(serving.ErrInvalidConfig), codes.InvalidArgument, 400},
		{"conflict", wrap(serving.ErrConflict), codes.FailedPrecondition, 409},
		{"model", wrap(serving.ErrModelNotFound), codes.NotFound, 404},
		{"version", wrap(serving.ErrVersionNotFound), codes.NotFound, 404},
		{"queue full", wrap(serving.ErrOverloaded), codes.ResourceExhausted, 429},
		{"not ready", wrap(serving.ErrNotReady), codes.Unavailable, 503},
		{"shutting down", serving.ErrShuttingDown, codes.Unavailable, 503},
		{"batcher closed", wrap(serving.ErrClosed), codes.Unavailable, 503},
		{"deadline", wrap(context.DeadlineExceeded), codes.DeadlineExceeded, 504},
		{"cancelled", wrap(context.Canceled), codes.Canceled, 499},
		{"unauthenticated", ErrUnauthenticated, codes.Unauthenticated, 401},
		{"forbidden", serving.ErrUnauthorized, codes.PermissionDenied, 403},
		{"limit", fmt.Errorf("body: %w", ErrLimit), codes.ResourceExhausted, 413},
		{"rate limited", fmt.Errorf("client c: %w", ErrRateLimited), codes.ResourceExhausted, 429},
		{"memory budget", fmt.Errorf("request r: %w", ErrMemoryBudget), codes.ResourceExhausted, 429},
		{"runtime", errors.New("onnx runtime: kernel failed"), codes.Internal, 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, h := Status(tc.err)
			if g != tc.grpc || h != tc.http {
				t.Errorf("Status = %v, %d; want %v, %d", g, h, tc.grpc, tc.http)
			}
			st, _ := status.FromError(GRPCError(tc.err))
			if st.Code() != tc.grpc || st.Message() != tc.err.Error() {
				t.Errorf("GRPCError = %v %q", st.Code(), st.Message())
			}
		})
	}
	already := status.Error(codes.Aborted, "x")
	if GRPCError(already) != already {
		t.Error("a status error must pass through")
	}
	if GRPCError(nil) != nil {
		t.Error("nil must stay nil")
	}
}
