package grpcapi

import (
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// Field numbers the codec reads and writes itself, from
// proto/inference.proto (the response's first three match the request's).
const (
	fieldRawInputContents  protowire.Number = 7 // ModelInferRequest.raw_input_contents
	fieldRawOutputContents protowire.Number = 6 // ModelInferResponse.raw_output_contents
	fieldStreamError       protowire.Number = 1 // ModelStreamInferResponse.error_message
	fieldStreamResponse    protowire.Number = 2 // ModelStreamInferResponse.infer_response

	fieldModelName    protowire.Number = 1 // ModelInferRequest.model_name
	fieldModelVersion protowire.Number = 2 // ModelInferRequest.model_version
	fieldID           protowire.Number = 3 // ModelInferRequest.id
	fieldInputs       protowire.Number = 5 // ModelInferRequest.inputs
	fieldOutputs      protowire.Number = 6 // ModelInferRequest.outputs
	fieldTensorName   protowire.Number = 1 // InferInputTensor.name, InferRequestedOutputTensor.name
	fieldTensorType   protowire.Number = 2 // InferInputTensor.datatype
	fieldTensorShape  protowire.Number = 3 // InferInputTensor.shape, InferOutputTensor.shape

	fieldResponseOutputs protowire.Number = 5 // ModelInferResponse.outputs
)

// separateOutput is the size from which a raw output travels as its own
// buffer rather than being copied behind the message's other fields.
const separateOutput = 4 << 10

// aliasFrom is the request size from which raw inputs alias a recycled
// copy of the received message; below it a copy of the garbage
// collector's serves (unmarshalSmall), which costs less than keeping
// track of a recycled one.
const aliasFrom = 4 << 10

// codec is the server's wire codec: the standard protobuf codec, with the
// tensor payloads of inference calls kept out of protobuf's copies. A large
// request is copied once into a recycled buffer and its raw_input_contents
// alias that buffer, instead of protobuf allocating and copying each payload
// again; the buffer goes back for reuse once the call has been answered
// (release). A response's large raw_output_contents go to the transport as
// they are instead of being copied into the marshalled message. Every other
// message, and every field but those payloads, goes through the standard
// codec. Safe for concurrent use.
type codec struct {
	std  encoding.CodecV2
	bufs transport.BufferPool
	// held maps a decoded request to the buffer its inputs alias. Keys are
	// weak and every entry has a cleanup, so a request dropped without
	// release only costs its buffer's reuse, never the memory.
	mu   sync.Mutex
	held map[weak.Pointer[inference.ModelInferRequest]]heldBuffer
	// nheld is len(held), read without the lock: while no request holds a
	// buffer, release skips the weak pointer and the lookup.
	nheld atomic.Int64
	// decodeFailures are the messages that could not be decoded, which
	// Unmarshal reports to the interceptors rather than to grpc-go.
	decodeFailures
	// charges hold the memory budget's charge of each decoded request
	// until release (budget.go); limits bound its element counts.
	charges charges
	limits  guard.Limits
}

type heldBuffer struct {
	buf     *[]byte
	cleanup runtime.Cleanup
}

// newCodec returns the codec, delegating to the registered protobuf codec.
func newCodec() *codec {
	return &codec{std: encoding.GetCodecV2(grpcproto.Name), held: map[weak.Pointer[inference.ModelInferRequest]]heldBuffer{},
		limits: guard.Limits{}.WithDefaults()}
}

// Name is the content subtype the codec serves: plain protobuf on the wire.
func (*codec) Name() string { return grpcproto.Name }

// Unmarshal decodes data into v. A message that cannot be decoded is left
// empty and its error recorded for the interceptors (decodeFailures);
// Unmarshal itself then succeeds.
func (c *codec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.unmarshal(data, v); err != nil {
		if m, ok := v.(proto.Message); ok {
			proto.Reset(m)
			c.failed(v, err)
			return nil
		}
		return err
	}
	return nil
}

func (c *codec) unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*inference.ModelInferRequest)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	// The copy below is charged before it is made; then the request is
	// charged what it holds until it is answered (its bytes, and what
	// decoding them costs), before it is decoded.
	size := int64(data.Len())
	if err := c.charges.budget.Charge(size); err != nil {
		return err
	}
	defer c.charges.budget.Refund(size)
	if data.Len() < aliasFrom {
		b := data.Materialize()
		if err := c.charge(b, req); err != nil {
			return err
		}
		if err := unmarshalSmall(b, req); err != nil {
			c.charges.refund(req)
			return err
		}
		return nil
	}
	buf := c.bufs.Get(data.Len())
	data.CopyTo(*buf)
	if err := c.charge(*buf, req); err != nil {
		c.bufs.Put(buf)
		return err
	}
	if err := unmarshalInfer(*buf, req); err != nil {
		c.charges.refund(req)
		c.bufs.Put(buf)
		// Malformed wire data: let the standard codec parse it again, so
		// the caller sees protobuf's own error.
		return c.std.Unmarshal(data, v)
	}
	key := weak.Make(req)
	h := heldBuffer{buf: buf, cleanup: runtime.AddCleanup(req, c.forget, key)}
	c.mu.Lock()
	c.held[key] = h
	c.nheld.Store(int64(len(c.held)))
	c.mu.Unlock()
	return nil
}

// release ends req's hold on its receive buffer, if it has one. With reuse
// the buffer is recycled, which the caller may ask for only when nothing
// reads req's inputs any more: the serving core answered the call itself
// (a call abandoned on its deadline may still be read by a batch). After
// release req's raw_input_contents are gone.
func (c *codec) release(req *inference.ModelInferRequest, reuse bool) {
	c.charges.refund(req)
	if req == nil || len(req.RawInputContents) == 0 || c.nheld.Load() == 0 {
		return
	}
	key := weak.Make(req)
	c.mu.Lock()
	h, ok := c.held[key]
	delete(c.held, key)
	c.nheld.Store(int64(len(c.held)))
	c.mu.Unlock()
	if !ok {
		return
	}
	h.cleanup.Stop()
	req.RawInputContents = nil
	if reuse {
		c.bufs.Put(h.buf)
	}
}

// charge checks the element counts of the request b and charges the
// budget for it before it is decoded into req (decodeCost).
func (c *codec) charge(b []byte, req *inference.ModelInferRequest) error {
	cost, err := decodeCost(b, c.limits)
	if err != nil {
		return err
	}
	return c.charges.take(req, int64(len(b))+cost)
}

// forget drops the entry of a request collected without release.
func (c *codec) forget(key weak.Pointer[inference.ModelInferRequest]) {
	c.mu.Lock()
	delete(c.held, key)
	c.nheld.Store(int64(len(c.held)))
	c.mu.Unlock()
}

// holding reports how many requests hold receive buffers (for tests).
func (c *codec) holding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

// unmarshalInfer decodes b into req: raw_input_contents as slices of b,
// every other field with protobuf. Protobuf writers emit fields in number
// order, so the other fields usually form a prefix of b and are parsed in
// place; otherwise they are gathered first.
func unmarshalInfer(b []byte, req *inference.ModelInferRequest) error {
	var raws [][]byte
	var rest []byte   // the other fields, when they are not one prefix
	prefix := len(b)  // where the first raw_input_contents starts
	gathered := false // rest holds every other field
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[off+n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		field := b[off : off+n+m]
		if num == fieldRawInputContents && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[off+n:])
			// Full slice expressions: appending to one tensor can never
			// write over the next field.
			raws = append(raws, v[:len(v):len(v)])
			if prefix == len(b) {
				prefix = off
			}
		} else if off > prefix || gathered {
			if !gathered {
				rest = append(rest, b[:prefix]...)
				gathered = true
			}
			rest = append(rest, field...)
		}
		off += n + m
	}
	if !gathered {
		rest = b[:prefix]
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return err
	}
	req.RawInputContents = raws
	return nil
}

// Marshal encodes v.
func (c *codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *inference.ModelInferResponse:
		var spare [4][]byte // parts stay on the stack; buffers copies them
		parts, _, err := marshalInfer(m, nil, spare[:0])
		if err != nil {
			return nil, err
		}
		return buffers(parts), nil
	case *inference.ModelStreamInferResponse:
		if m.GetInferResponse() != nil {
			return marshalStream(m)
		}
	}
	return c.std.Marshal(v)
}

// marshalInfer appends to parts the parts whose concatenation is m's
// encoding, after head (which the first of them extends): every field but
// raw_output_contents (directly for the responses the server builds,
// through protobuf otherwise), then each raw output as a field of its own,
// small ones copied, large ones as their own part. m is left as it was.
// size is the message's encoded length, head excluded.
func marshalInfer(m *inference.ModelInferResponse, head []byte, parts [][]byte) (_ [][]byte, size int, err error) {
	raws := m.RawOutputContents
	if head == nil {
		head = make([]byte, 0, sizeHint(m))
	}
	cur, ok := appendCommonResponse(head, m)
	if !ok {
		m.RawOutputContents = nil
		var err error
		cur, err = proto.MarshalOptions{}.MarshalAppend(head, m)
		m.RawOutputContents = raws
		if err != nil {
			return nil, 0, err
		}
	}
	size = len(cur) - len(head)
	for _, r := range raws {
		cur = protowire.AppendTag(cur, fieldRawOutputContents, protowire.BytesType)
		cur = protowire.AppendVarint(cur, uint64(len(r)))
		size += protowire.SizeTag(fieldRawOutputContents) + protowire.SizeVarint(uint64(len(r))) + len(r)
		if len(r) < separateOutput {
			cur = append(cur, r...)
			continue
		}
		parts = append(parts, cur, r)
		cur = nil
	}
	if len(cur) > 0 {
		parts = append(parts, cur)
	}
	return parts, size, nil
}

// sizeHint bounds from above the bytes of m that marshalInfer copies into
// its first part, so that part is allocated once: every field's tag and
// length take at most 11 bytes.
func sizeHint(m *inference.ModelInferResponse) int {
	n := 33 + len(m.ModelName) + len(m.ModelVersion) + len(m.Id)
	for _, o := range m.Outputs {
		n += 44 + len(o.GetName()) + len(o.GetDatatype()) + 10*len(o.GetShape())
	}
	for _, r := range m.RawOutputContents {
		n += 11
		if len(r) < separateOutput {
			n += len(r)
		}
	}
	return n
}

// marshalStream encodes a stream response that carries an inner response:
// error_message, then infer_response's tag and length ahead of
// marshalInfer's parts.
func marshalStream(m *inference.ModelStreamInferResponse) (mem.BufferSlice, error) {
	var head []byte
	if e := m.GetErrorMessage(); e != "" {
		head = protowire.AppendTag(head, fieldStreamError, protowire.BytesType)
		head = protowire.AppendString(head, e)
	}
	inner := m.GetInferResponse()
	// The inner length comes first on the wire, so measure it on its own
	// and put head in front of its parts once it is known.
	var spare [4][]byte
	parts, size, err := marshalInfer(inner, nil, spare[:1])
	if err != nil {
		return nil, err
	}
	head = protowire.AppendTag(head, fieldStreamResponse, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(size))
	parts[0] = head
	return buffers(parts), nil
}

// buffers hands parts to the transport without copying them. The parts are
// never written again: raw outputs are the serving core's, which nobody
// modifies once they are answered. The buffers are pointers into one
// block rather than a SliceBuffer boxed for each part, and a message of
// one part, the usual, takes a single allocation.
func buffers(parts [][]byte) mem.BufferSlice {
	if len(parts) == 1 {
		b := new(singleBuffer)
		b.buf = parts[0]
		b.slice[0] = &b.buf
		return b.slice[:]
	}
	out := make(mem.BufferSlice, len(parts))
	bufs := make([]mem.SliceBuffer, len(parts))
	for i, p := range parts {
		bufs[i] = p
		out[i] = &bufs[i]
	}
	return out
}

// singleBuffer is the one allocation of buffers for a single part.
type singleBuffer struct {
	slice [1]mem.Buffer
	buf   mem.SliceBuffer
}
