// Package transport holds what the HTTP and gRPC front ends share: the one
// table that maps serving errors to gRPC codes and HTTP statuses, request
// deadlines and request ids (client's, x-request-id, else a UUID v7), the
// request metrics and access log (labelled with what the serving core
// answered, never request content), and the defences both apply the same way:
// bearer tokens (management and inference), TLS certificates reloaded from
// files, decoding limits, the per-client rate limiter, the connection
// limit and the scrubbing of host paths from messages sent to clients.
//
// It knows no wire format beyond that: decoding stays in the front ends.
// Nothing imports transport but the front ends and the command that wires
// them.
package transport
