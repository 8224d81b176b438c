// Package dataset reads and writes the data files of the offline commands
// (`onnxserve score`, `onnxserve profile`): JSON lines, CSV, NPY and
// Parquet, one record at a time, so memory stays flat whatever the file
// size. A Reader turns each record into one row of tensors shaped by the
// model's input specs; a Writer writes one row of output tensors per
// record. It also decodes the v2 JSON tensor form ({"name", "shape",
// "datatype", "data"}) that golden tests and JSON lines share.
//
// It knows tensors and files only: nothing of models, sessions, batching,
// checkpoints or the wire protocols of the server.
package dataset
