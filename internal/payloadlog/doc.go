// Package payloadlog writes sampled inference requests and responses to
// payload log sinks for audit and retraining, and reads the file sink back
// to export a training set.
//
// A Logger is a serving tap: on the request path it only decides whether a
// request is sampled (per model, from payload_log in config.yaml) and copies
// the sampled one; encoding to v2 JSON and building CloudEvents happen on
// the tap's goroutine, and each sink (rotating JSON-lines files, CloudEvents
// over HTTP as KServe's inference logger sends them) writes behind its own
// bounded queue, so a slow or failed sink drops events, counted, and never
// slows a request. Export joins a file sink's request and response events
// into one row per inference row, streaming.
//
// The package knows the serving core's tap records and tensors, nothing of
// the wire protocols' front ends, model files or the other taps.
package payloadlog
