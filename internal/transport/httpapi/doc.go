// Package httpapi is the KServe v2 (Open Inference Protocol) HTTP front end,
// on fasthttp: health, server and model metadata, inference in JSON and in
// the binary tensor extension, and the model repository management API.
//
// It turns request bodies into tensor values and responses back, maps
// errors through package transport's one table, and enforces, with package
// guard's defences, the management API's access rule, the inference token,
// the rate limit, the decoding limits (before any buffer is sized from a
// client's claim), the connection limit and the read timeouts that cut off
// clients trickling their requests. It knows nothing of batching, routing or ONNX Runtime:
// everything past decoding goes through the Backend interface.
//
// Wire choices a client may notice:
//   - "data" may be flat or nested; only the element count is checked
//     against the shape, and the response always sends it flat.
//   - Integers out of their type's range, fractions or exponents for integer
//     types, and FP16/BF16/FP32/FP64 values that overflow their type are
//     rejected, naming the input and element.
//   - JSON has no NaN or infinity, so such output elements are sent as null;
//     request binary output to receive them exactly.
//   - The routing key comes from the header named by the model's
//     traffic.sticky_key (default x-routing-key), else from the request
//     parameter of that name, else from the routing_key parameter.
//   - Request bodies must be uncompressed.
//
// JSON bodies are read with package jsonscan's lexer and number parser,
// not encoding/json (its doc comment records why, measured); decode.go
// reads the v2 document, data.go an input's data into the tensor layout,
// binary.go the binary extension.
//
// Decoded tensors never share memory with fasthttp's request buffers: the
// batcher may still read a request's inputs after its caller gave up on a
// deadline, by which time fasthttp has reused the buffer.
package httpapi
