package httpapi

import "github.com/onnxserve/onnxserve/internal/tensor"

// The binary tensor extension: inputs whose data follows the JSON document
// in the body, sized by their binary_data_size parameters.

// attachBinary gives every binary input its slice of the binary section,
// which it copies once, and checks that the sizes account for every byte.
func (d *decoder) attachBinary(req *inferRequest, bin []byte, haveHeader bool) error {
	var total int64
	for i, size := range d.binSizes {
		if size < 0 {
			continue
		}
		name := req.Inputs[i].Name
		if !haveHeader {
			return tensor.Invalidf("input %q: has a %s parameter but the request has no Inference-Header-Content-Length header", name, paramBinaryDataSize)
		}
		if size > int64(len(bin))-total {
			return tensor.Invalidf("input %q: %s %d runs past the end of the %d bytes of binary data", name, paramBinaryDataSize, size, len(bin))
		}
		in := req.Inputs[i]
		in.Data = bin[total : total+size]
		if err := d.lim.CheckTensor(in); err != nil {
			return err
		}
		total += size
	}
	if total != int64(len(bin)) {
		return tensor.Invalidf("the inputs' %s parameters sum to %d bytes, but the body has %d bytes after the JSON header", paramBinaryDataSize, total, len(bin))
	}
	if d.binSizes == nil {
		return nil
	}
	owned := make([]byte, len(bin))
	copy(owned, bin)
	off := int64(0)
	for i, size := range d.binSizes {
		if size < 0 {
			continue
		}
		t := &req.Inputs[i]
		t.Data = owned[off : off+size : off+size]
		off += size
		if t.DataType != tensor.Bytes {
			n, _ := tensor.ElementCount(t.Shape)
			if want := n * int64(t.DataType.Size()); want != size {
				return tensor.Invalidf("input %q: shape %s of %s needs %d bytes, %s is %d", t.Name, formatShape(t.Shape), t.DataType, want, paramBinaryDataSize, size)
			}
			continue
		}
		if err := t.Validate(); err != nil {
			return err
		}
	}
	return nil
}
