// Package router decides which version of one model answers a request that
// names no version, and whether the request is also mirrored to a shadow
// version.
//
// It owns the A/B traffic table: a weighted split across versions, sticky
// routing by a caller-supplied key through consistent hashing, redistribution
// of an unready arm's share to the ready arms, and the shadow choice. A Table
// is an immutable snapshot built from a Spec and the set of ready versions;
// callers rebuild it whenever either changes and publish it atomically, so
// picking a version takes no lock and allocates nothing.
//
// It knows nothing of model files, requests, batching, wire formats or how a
// version becomes ready, and imports no other package of the server: versions
// are plain int64 numbers here.
package router
