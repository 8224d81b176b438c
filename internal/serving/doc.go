// Package serving owns the live set of models and versions: it loads them
// through its Loader, warms them up, swaps versions atomically while requests
// keep flowing, routes each request to a version and hands it to that
// version's batcher. It knows nothing of wire formats and reaches ONNX Runtime
// only through the Loader interface.
//
// A request crosses into it once: Infer looks the model up, resolves the
// sticky routing key from the request's Metadata, checks the inputs
// against the model and puts them in declared order (the one place that
// does; the batcher and the runtime take that as their precondition), and
// answers with the canonical model and version labels, on errors too
// (Labels). A request a front end fails before Infer comes through Refuse.
//
// Every answered request, primary or shadow, success or failure, is handed
// to the registered taps (AddTap): Keep copies what a tap needs on the
// request path, Consume runs on the tap's own goroutine behind a bounded
// queue whose drops are counted. With no tap registered no record is built.
package serving
