package transport

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TimeoutParameter is the request parameter (microseconds, as Triton
// defines it) that sets a request's queue deadline when the transport gives
// none.
const TimeoutParameter = "timeout"

// maxTimeoutMicros is the largest timeout parameter a time.Duration holds;
// larger values are clamped to it rather than overflowing into the past.
const maxTimeoutMicros = math.MaxInt64 / int64(time.Microsecond)

// WithTimeoutMicros bounds ctx by a client's timeout parameter. Zero means no
// bound; a negative value is a bad request; a value beyond what a
// time.Duration holds (about 292 years) is clamped to it.
func WithTimeoutMicros(ctx context.Context, micros int64) (context.Context, context.CancelFunc, error) {
	if micros < 0 {
		return ctx, func() {}, tensor.Invalidf("parameter %q: must be >= 0 microseconds, got %d", TimeoutParameter, micros)
	}
	if micros == 0 {
		return ctx, func() {}, nil
	}
	micros = min(micros, maxTimeoutMicros)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(micros)*time.Microsecond)
	return ctx, cancel, nil
}

// RequestID returns the client's id when it gave one, else a fresh random id,
// so every access-log line can be tied to one request.
func RequestID(clientID string) string {
	if clientID != "" {
		return clientID
	}
	var b [8]byte
	v := rand.Uint64()
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

// RoutingKeyParameter is the request parameter that carries a sticky routing
// key when no header or metadata does.
const RoutingKeyParameter = "routing_key"

// ParamError names a request parameter with a bad value.
func ParamError(name string, v any) error {
	return tensor.Invalidf("parameter %q: unsupported value %v", name, fmt.Sprint(v))
}
