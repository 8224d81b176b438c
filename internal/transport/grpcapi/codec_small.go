package grpcapi

import (
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	inference "github.com/onnxserve/onnxserve/proto"
)

// decodeCommon decodes b into req when b holds only what most requests
// carry: names, version, id, inputs with name, datatype and shape, outputs
// by name, and raw contents. It reports false for anything else
// (parameters, typed contents, unknown fields, malformed or non-UTF-8
// data), leaving req to protobuf's own decoder, so its results are always
// protobuf's. Strings and raw contents alias b, which must not change
// afterwards; skipping protobuf's reflection and its copies is what makes
// it cheaper for the small requests that dominate an overhead-bound load.
func decodeCommon(b []byte, req *inference.ModelInferRequest) bool {
	return eachBytesField(b, func(num protowire.Number, v []byte) bool {
		var ok bool
		switch num {
		case fieldModelName:
			req.ModelName, ok = aliasString(v)
		case fieldModelVersion:
			req.ModelVersion, ok = aliasString(v)
		case fieldID:
			req.Id, ok = aliasString(v)
		case fieldInputs:
			if !commonInput(v) {
				return false
			}
			in := &inference.ModelInferRequest_InferInputTensor{}
			ok = decodeInput(v, in)
			req.Inputs = append(req.Inputs, in)
		case fieldOutputs:
			out := &inference.ModelInferRequest_InferRequestedOutputTensor{}
			ok = eachBytesField(v, func(num protowire.Number, v []byte) bool {
				var ok bool
				if num == fieldTensorName {
					out.Name, ok = aliasString(v)
				}
				return ok
			})
			req.Outputs = append(req.Outputs, out)
		case fieldRawInputContents:
			req.RawInputContents, ok = append(req.RawInputContents, v[:len(v):len(v)]), true
		}
		return ok
	})
}

// eachBytesField calls f with each field of b, which must all be
// length-delimited, and reports false as soon as one is not, b is
// malformed or f returns false.
func eachBytesField(b []byte, f func(num protowire.Number, v []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return false
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 || !f(num, v) {
			return false
		}
		b = b[n+m:]
	}
	return true
}

// commonInput reports whether an input tensor carries only the fields
// decodeInput reads, before anything is allocated for it: a request with
// typed contents or parameters goes to protobuf without that waste.
func commonInput(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		switch num {
		case fieldTensorName, fieldTensorType, fieldTensorShape:
		default:
			return false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return false
		}
		b = b[n+m:]
	}
	return true
}

func decodeInput(b []byte, in *inference.ModelInferRequest_InferInputTensor) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == fieldTensorShape && typ == protowire.VarintType:
			x, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return false
			}
			in.Shape = append(in.Shape, int64(x))
			b = b[m:]
		case typ != protowire.BytesType:
			return false
		default:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			b = b[m:]
			var ok bool
			switch num {
			case fieldTensorName:
				in.Name, ok = aliasString(v)
			case fieldTensorType:
				in.Datatype, ok = aliasString(v)
			case fieldTensorShape: // packed
				ok = appendPacked(v, &in.Shape)
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

// appendPacked appends a packed run of int64 varints to dst.
func appendPacked(b []byte, dst *[]int64) bool {
	if *dst == nil {
		// One element per byte without its continuation bit.
		n := 0
		for _, c := range b {
			if c < 0x80 {
				n++
			}
		}
		*dst = make([]int64, 0, n)
	}
	for len(b) > 0 {
		x, m := protowire.ConsumeVarint(b)
		if m < 0 {
			return false
		}
		*dst = append(*dst, int64(x))
		b = b[m:]
	}
	return true
}

// aliasString views b as a string, as proto3 requires valid UTF-8.
func aliasString(b []byte) (string, bool) {
	if len(b) == 0 {
		return "", true
	}
	if !utf8.Valid(b) {
		return "", false
	}
	return unsafe.String(unsafe.SliceData(b), len(b)), true
}

// unmarshalSmall decodes a request below aliasFrom bytes: decodeCommon on
// a copy of the message the garbage collector owns, which its strings and
// raw contents may alias for as long as they live, else protobuf.
func unmarshalSmall(b []byte, req *inference.ModelInferRequest) error {
	if decodeCommon(b, req) {
		return nil
	}
	return proto.Unmarshal(b, req)
}

// appendCommonResponse appends m without its raw_output_contents to b, in
// protobuf's field order and encoding, when m is what the server builds:
// names, version, id and outputs with name, datatype and shape. For
// anything else (parameters, typed contents, unknown fields) it reports
// false and m is left to protobuf.
func appendCommonResponse(b []byte, m *inference.ModelInferResponse) ([]byte, bool) {
	if len(m.Parameters) > 0 || len(m.ProtoReflect().GetUnknown()) > 0 {
		return b, false
	}
	b = appendString(b, fieldModelName, m.ModelName)
	b = appendString(b, fieldModelVersion, m.ModelVersion)
	b = appendString(b, fieldID, m.Id)
	for _, o := range m.Outputs {
		if o == nil || len(o.Parameters) > 0 || o.Contents != nil || len(o.ProtoReflect().GetUnknown()) > 0 {
			return b, false
		}
		shape := 0
		for _, d := range o.Shape {
			shape += protowire.SizeVarint(uint64(d))
		}
		size := stringSize(fieldTensorName, o.Name) + stringSize(fieldTensorType, o.Datatype)
		if len(o.Shape) > 0 {
			size += protowire.SizeTag(fieldTensorShape) + protowire.SizeBytes(shape)
		}
		b = protowire.AppendTag(b, fieldResponseOutputs, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = appendString(b, fieldTensorName, o.Name)
		b = appendString(b, fieldTensorType, o.Datatype)
		if len(o.Shape) > 0 {
			b = protowire.AppendTag(b, fieldTensorShape, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(shape))
			for _, d := range o.Shape {
				b = protowire.AppendVarint(b, uint64(d))
			}
		}
	}
	return b, true
}

// appendString appends a proto3 string field, which is left out when empty.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

func stringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}
