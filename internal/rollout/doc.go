// Package rollout is progressive delivery inside the server: a candidate
// version takes a growing share of a model's traffic step by step, each
// step judged against a baseline version over the same window, and is
// promoted, held or rolled back.
//
// It reads its signals (errors and latency from its own tap, shadow
// agreement and, where cmd/serve plugs them in, accuracy and output drift)
// and moves traffic through small interfaces of its own, which
// *serving.Server satisfies. It
// knows nothing of wire formats, config files or ONNX Runtime; cmd/serve
// turns a model's rollout block into a Policy.
package rollout
