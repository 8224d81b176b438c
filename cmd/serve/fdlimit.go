package main

import (
	"math"
	"syscall"
)

// maxConnectionsNote says where the default of --max-connections comes from.
const maxConnectionsNote = "the descriptor limit being the process's RLIMIT_NOFILE"

// Descriptors kept out of the connection limits: a fixed part for the
// model files, logs, the repository watcher, the metrics port and ONNX
// Runtime, and an eighth of the limit for connections being refused and
// everything that grows with the server's size.
const (
	reservedDescriptors  = 64
	reservedDescriptorsP = 8 // 1/reservedDescriptorsP of the limit
)

// maxConnectionsFor derives the per-port connection limit from a
// descriptor limit: what the reserve leaves, shared by the HTTP and gRPC
// ports, (nofile - nofile/8 - 64) / 2, at least 1. A server with that many
// idle connections on both ports still has descriptors for its files, so
// it keeps working and refuses further connections with an answer rather
// than failing to accept them.
func maxConnectionsFor(nofile uint64) int {
	if nofile > math.MaxInt32 {
		nofile = math.MaxInt32
	}
	n := int64(nofile) - int64(nofile)/reservedDescriptorsP - reservedDescriptors
	return int(max(n/2, 1))
}

// defaultMaxConnections is maxConnectionsFor the process's soft
// RLIMIT_NOFILE (which the Go runtime raises to the hard limit at
// startup); 10000 when it cannot be read.
func defaultMaxConnections() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 10000
	}
	return maxConnectionsFor(r.Cur)
}
