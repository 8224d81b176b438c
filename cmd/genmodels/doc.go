// Command genmodels writes the bundled model repository: the ONNX models
// built by internal/onnxgen and the config.yaml beside each of them.
//
//	go run ./cmd/genmodels -out models
//
// With -candidates DIR it also writes two variants of the classifier that
// are not bundled, for trying rollouts: picky/model.onnx rejects about 5%
// of the inputs version 1 accepts, heavy/model.onnx answers like version 1
// at many times its compute.
//
// Its output is byte-for-byte reproducible, and a test holds the committed
// models/ folder to it, so the repository is changed by changing this
// command and running it again, never by hand. It knows nothing of ONNX
// Runtime or of how the server reads the files.
package main
