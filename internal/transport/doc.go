// Package transport holds what the HTTP and gRPC front ends share: the one
// table that maps serving errors to gRPC codes and HTTP statuses, request
// deadlines and request ids. Nothing imports transport but the front ends.
package transport
