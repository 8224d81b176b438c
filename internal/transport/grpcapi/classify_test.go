package grpcapi

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/transport"
)

func TestClassify(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	// Cancelled a moment before its deadline: the client's deadline fired.
	nearDeadline, cancel3 := context.WithDeadline(context.Background(), time.Now().Add(deadlineSlack/2))
	cancel3()
	farDeadline, cancel4 := context.WithDeadline(context.Background(), time.Now().Add(time.Hour))
	cancel4()

	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want codes.Code
	}{
		{"runtime failure", live, errRuntime, codes.Internal},
		{"runtime failure after cancel", cancelled, errRuntime, codes.Canceled},
		{"runtime failure after deadline", expired, errRuntime, codes.DeadlineExceeded},
		{"not found stays", cancelled, fmt.Errorf("model %q: %w", "m", serving.ErrModelNotFound), codes.NotFound},
		{"cancel", cancelled, context.Canceled, codes.Canceled},
		{"cancel at the deadline", nearDeadline, context.Canceled, codes.DeadlineExceeded},
		{"cancel long before the deadline", farDeadline, context.Canceled, codes.Canceled},
		{"deadline", expired, fmt.Errorf("queue: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := transport.Status(classify(tt.ctx, tt.err)); got != tt.want {
				t.Fatalf("code = %v, want %v", got, tt.want)
			}
		})
	}
}
