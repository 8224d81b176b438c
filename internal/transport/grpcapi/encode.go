package grpcapi

import (
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	inference "github.com/onnxserve/onnxserve/proto"
)

// encodeResponse builds the protocol response. Outputs always travel as
// raw_output_contents, which is the tensor layout itself, so output data is
// aliased rather than copied: the serving core hands out outputs that nobody
// modifies afterwards.
func encodeResponse(resp *serving.Response, id string) *inference.ModelInferResponse {
	out := &inference.ModelInferResponse{
		ModelName:         resp.Model,
		ModelVersion:      resp.Version,
		Id:                id,
		Outputs:           make([]*inference.ModelInferResponse_InferOutputTensor, len(resp.Outputs)),
		RawOutputContents: make([][]byte, len(resp.Outputs)),
	}
	// One allocation for all output descriptors instead of one each.
	descs := make([]inference.ModelInferResponse_InferOutputTensor, len(resp.Outputs))
	for i, t := range resp.Outputs {
		d := &descs[i]
		d.Name = t.Name
		d.Datatype = t.DataType.String()
		d.Shape = t.Shape
		out.Outputs[i] = d
		out.RawOutputContents[i] = t.Data
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
