// Package transport holds what the HTTP and gRPC front ends share in
// handling a request: the one table that maps serving errors to gRPC codes
// and HTTP statuses (with the error classes the front ends add to serving's:
// bad request, unauthenticated, over a limit, rate limited), request
// deadlines and request ids, and the request metrics and access log
// (Observer).
//
// The defences both front ends apply the same way (tokens, TLS reload,
// rate, connection and size limits, path scrubbing) live in the guard
// subpackage, which wraps this package's error classes.
//
// It knows no wire format beyond that: decoding stays in the front ends.
// Nothing imports transport but the front ends, guard and the command that
// wires them.
package transport
