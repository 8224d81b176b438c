package grpcapi

import (
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	inference "github.com/onnxserve/onnxserve/proto"
)

// encodeResponse builds the protocol response. Outputs always travel as
// raw_output_contents, which is the tensor layout itself, so output data is
// aliased rather than copied: the serving core hands out outputs that nobody
// modifies afterwards. A response with few outputs takes one allocation:
// the message, its output descriptors and both slices together.
func encodeResponse(resp *serving.Response, id string) *inference.ModelInferResponse {
	n := len(resp.Outputs)
	switch {
	case n <= 1:
		b := new(responseBlock1)
		return fillResponse(&b.msg, b.descs[:n:n], b.ptrs[:n:n], b.raws[:n:n], resp, id)
	case n <= 4:
		b := new(responseBlock4)
		return fillResponse(&b.msg, b.descs[:n:n], b.ptrs[:n:n], b.raws[:n:n], resp, id)
	}
	return fillResponse(&inference.ModelInferResponse{},
		make([]inference.ModelInferResponse_InferOutputTensor, n),
		make([]*inference.ModelInferResponse_InferOutputTensor, n),
		make([][]byte, n), resp, id)
}

// responseBlock1 and responseBlock4 are the single allocations of a
// response with up to one and up to four outputs.
type (
	responseBlock1 struct {
		msg   inference.ModelInferResponse
		descs [1]inference.ModelInferResponse_InferOutputTensor
		ptrs  [1]*inference.ModelInferResponse_InferOutputTensor
		raws  [1][]byte
	}
	responseBlock4 struct {
		msg   inference.ModelInferResponse
		descs [4]inference.ModelInferResponse_InferOutputTensor
		ptrs  [4]*inference.ModelInferResponse_InferOutputTensor
		raws  [4][]byte
	}
)

// fillResponse sets out to resp under id, with descs, ptrs and raws (each
// as long as resp's outputs) as the storage of its outputs.
func fillResponse(out *inference.ModelInferResponse, descs []inference.ModelInferResponse_InferOutputTensor,
	ptrs []*inference.ModelInferResponse_InferOutputTensor, raws [][]byte, resp *serving.Response, id string,
) *inference.ModelInferResponse {
	out.ModelName = resp.Model
	out.ModelVersion = resp.Version
	out.Id = id
	out.Outputs = ptrs
	out.RawOutputContents = raws
	for i, t := range resp.Outputs {
		d := &descs[i]
		d.Name = t.Name
		d.Datatype = t.DataType.String()
		d.Shape = t.Shape
		ptrs[i] = d
		raws[i] = t.Data
	}
	return out
}

// encodeSpecs describes model inputs or outputs for ModelMetadata.
func encodeSpecs(specs []tensor.Spec) []*inference.ModelMetadataResponse_TensorMetadata {
	out := make([]*inference.ModelMetadataResponse_TensorMetadata, len(specs))
	for i, s := range specs {
		out[i] = &inference.ModelMetadataResponse_TensorMetadata{
			Name:     s.Name,
			Datatype: s.DataType.String(),
			Shape:    s.Shape,
		}
	}
	return out
}
