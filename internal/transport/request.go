package transport

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
	"unsafe"

	"github.com/google/uuid"

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

// RequestIDHeader is the HTTP header and gRPC metadata key that carries a
// request id in both directions.
const RequestIDHeader = "x-request-id"

// RequestID settles a request's id: the client's id field when it gave one,
// else the x-request-id header or metadata value, else a new one
// (NewRequestID). The id comes back in the response and ties the access
// log and tap records to the request.
func RequestID(clientID, headerID string) string {
	if clientID != "" {
		return clientID
	}
	if headerID != "" {
		return headerID
	}
	return NewRequestID()
}

// NewRequestID returns a fresh id: a UUID version 7, unique and sortable by
// creation time.
func NewRequestID() string {
	var buf [RequestIDLen]byte
	return string(appendRequestID(buf[:0]))
}

// The ids' random bits come from a buffered pool filled from the system
// source 256 ids at a time: one read instead of one per request, and no
// allocation. The uuid package allows turning it on only before any
// concurrent use, which package initialisation guarantees.
func init() { uuid.EnableRandPool() }

// RequestIDLen is the length of an id NewRequestID makes.
const RequestIDLen = 36

// RequestIDInto is RequestID that writes a generated id into buf and
// returns a string that shares buf's memory, so a caller that keeps buf in
// a per-request value it allocates anyway pays nothing more. buf must not
// change while the string is in use.
func RequestIDInto(clientID, headerID string, buf *[RequestIDLen]byte) string {
	if clientID != "" {
		return clientID
	}
	if headerID != "" {
		return headerID
	}
	b := appendRequestID(buf[:0])
	return unsafe.String(&b[0], len(b))
}

// appendRequestID appends a new UUID v7 in its canonical text form.
func appendRequestID(dst []byte) []byte {
	id, err := uuid.NewV7()
	if err != nil {
		// Only a failing system random source gets here; fall back to a
		// random v4 from math/rand so the request still has an id.
		for i := range id {
			id[i] = byte(rand.Uint32())
		}
		id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80
	}
	const digits = "0123456789abcdef"
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, digits[c>>4], digits[c&0x0f])
	}
	return dst
}

// RoutingKeyParameter is the request parameter that carries a sticky routing
// key when no header or metadata does.
const RoutingKeyParameter = "routing_key"

// ParamError names a request parameter with a bad value.
func ParamError(name string, v any) error {
	return tensor.Invalidf("parameter %q: unsupported value %v", name, fmt.Sprint(v))
}
