package httpapi

import (
	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
)

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
	var owned []byte
	if len(bin) >= recycleFrom {
		req.binBuf = binBuffers.Get(len(bin))
		owned = *req.binBuf
	} else {
		owned = make([]byte, len(bin))
	}
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

// recycleFrom is the binary section size from which its copy lives in a
// recycled buffer; below it a fresh allocation costs less than the
// bookkeeping.
const recycleFrom = 4 << 10

// binBuffers recycles the copies of binary sections, as the gRPC front end
// recycles its receive buffers: one request's copy serves a later request
// once the first was answered.
var binBuffers transport.BufferPool

// release ends the request's hold on its recycled binary section, if it
// has one. With reuse the buffer goes back to the pool, which the caller may
// ask for only when nothing reads the inputs any more: the serving core
// answered the request itself (a request abandoned on its deadline may
// still be read by a running batch, so its buffer is left to the garbage
// collector). After release the inputs' data is gone.
func (r *inferRequest) release(reuse bool) {
	if r.binBuf == nil {
		return
	}
	if reuse {
		binBuffers.Put(r.binBuf)
	}
	r.binBuf = nil
	for i := range r.Inputs {
		r.Inputs[i].Data = nil
	}
}
