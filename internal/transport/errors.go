package transport

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// ErrBadRequest marks a request the front end itself could not decode
// (malformed JSON, a bad header); it maps like a validation error.
var ErrBadRequest = tensor.ErrInvalid

// ErrUnauthenticated marks a call without valid credentials.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrLimit marks a request over a configured size or count limit.
var ErrLimit = errors.New("limit exceeded")

// ErrRateLimited marks a request refused because its client sends faster
// than the per-client rate limit allows.
var ErrRateLimited = errors.New("rate limited")

// ErrMemoryBudget marks a request refused because the bytes of the
// requests in flight fill the server's memory budget; the client should
// retry later.
var ErrMemoryBudget = errors.New("memory budget exhausted")

// statusRow pairs the two protocols' codes for one class of error.
type statusRow struct {
	err  error
	grpc codes.Code
	http int
}

// statusTable is the single mapping of DESIGN §1; the first match wins.
var statusTable = []statusRow{
	{context.DeadlineExceeded, codes.DeadlineExceeded, http.StatusGatewayTimeout},
	{context.Canceled, codes.Canceled, 499},
	{ErrUnauthenticated, codes.Unauthenticated, http.StatusUnauthorized},
	{serving.ErrUnauthorized, codes.PermissionDenied, http.StatusForbidden},
	{ErrLimit, codes.ResourceExhausted, http.StatusRequestEntityTooLarge},
	{ErrRateLimited, codes.ResourceExhausted, http.StatusTooManyRequests},
	{ErrMemoryBudget, codes.ResourceExhausted, http.StatusTooManyRequests},
	{tensor.ErrInvalid, codes.InvalidArgument, http.StatusBadRequest},
	{serving.ErrInvalidConfig, codes.InvalidArgument, http.StatusBadRequest},
	{serving.ErrConflict, codes.FailedPrecondition, http.StatusConflict},
	{serving.ErrModelNotFound, codes.NotFound, http.StatusNotFound},
	{serving.ErrVersionNotFound, codes.NotFound, http.StatusNotFound},
	{serving.ErrOverloaded, codes.ResourceExhausted, http.StatusTooManyRequests},
	{serving.ErrNotReady, codes.Unavailable, http.StatusServiceUnavailable},
	{serving.ErrShuttingDown, codes.Unavailable, http.StatusServiceUnavailable},
	{serving.ErrClosed, codes.Unavailable, http.StatusServiceUnavailable},
}

// Status returns the gRPC code and HTTP status for err: the table's first
// match, else INTERNAL / 500.
func Status(err error) (codes.Code, int) {
	for _, row := range statusTable {
		if errors.Is(err, row.err) {
			return row.grpc, row.http
		}
	}
	return codes.Internal, http.StatusInternalServerError
}

// GRPCError converts err into a gRPC status error with its message. A status
// error passes through unchanged.
func GRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code, _ := Status(err)
	return status.Error(code, err.Error())
}
