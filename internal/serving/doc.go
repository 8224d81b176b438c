// Package serving owns the live set of models and versions: it loads them
// through its Loader, warms them up, swaps versions atomically while requests
// keep flowing, routes each request to a version and hands it to that
// version's batcher. It knows nothing of wire formats and reaches ONNX Runtime
// only through the Loader interface.
package serving
