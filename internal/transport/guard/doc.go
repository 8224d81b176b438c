// Package guard holds the defences the HTTP and gRPC front ends apply the
// same way before, and while, they serve a request: who may call (bearer
// tokens for management and inference, the loopback rule of the
// management API), on what channel (server certificates and client CAs
// reloaded from files), how often (the per-client token-bucket rate
// limiter), how many at once (the connection limit, whose refusals tell the
// client why), how much (the request-size Limits) and what leaves (the
// scrubbing of host paths from messages sent to clients).
//
// Limits is here although the decoders apply it while they decode: it is a
// defence, not a rule of the wire format. It bounds what a client's claim
// may make the server allocate (inputs, elements, BYTES lengths) and names
// the setting to raise, as the connection and rate limits do; the decoders
// only call it before they size a buffer.
//
// Its errors wrap package transport's classes (ErrUnauthenticated,
// ErrLimit, ErrRateLimited), so the one status table maps them; that is
// guard's only internal import besides serving's ErrUnauthorized and
// tensor's layout. It knows nothing of wire formats, models or handlers,
// and nothing but the front ends and the command that wires them imports
// it.
package guard
