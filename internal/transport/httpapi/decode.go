package httpapi

import (
	"errors"
	"strconv"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	"github.com/onnxserve/onnxserve/internal/transport/httpapi/jsonscan"
)

// inferRequest is one decoded infer call, before it becomes a
// serving.Request. Every byte it holds is its own: nothing aliases the body
// it was decoded from.
type inferRequest struct {
	ID string
	// Timeout is the "timeout" parameter in microseconds; 0 means none.
	Timeout int64
	// RoutingKey is the "routing_key" parameter.
	RoutingKey string
	// BinaryOutput is the request-level "binary_data_output" parameter, the
	// default for every output that does not say otherwise.
	BinaryOutput bool
	// Sequence holds the sequence_id, sequence_start and sequence_end
	// parameters.
	Sequence serving.Sequence
	Inputs   []tensor.Tensor
	Outputs  []outputRequest
	// binBuf, when not nil, is the recycled buffer the binary inputs'
	// data lives in, handed back by release.
	binBuf *[]byte
}

// outputRequest is one entry of the request's "outputs" list.
type outputRequest struct {
	Name string
	// Binary is the output's "binary_data" parameter: binaryUnset defers to
	// the request-level default.
	Binary int8
}

const (
	binaryUnset int8 = iota
	binaryNo
	binaryYes
)

// binaryFor reports whether output i of the response (in the order the
// request listed them, or the model's order when it listed none) is sent in
// the binary section.
func (r *inferRequest) binaryFor(i int) bool {
	if i < len(r.Outputs) {
		switch r.Outputs[i].Binary {
		case binaryYes:
			return true
		case binaryNo:
			return false
		}
	}
	return r.BinaryOutput
}

// outputNames lists the requested outputs; nil asks for all.
func (r *inferRequest) outputNames() []string {
	if len(r.Outputs) == 0 {
		return nil
	}
	names := make([]string, len(r.Outputs))
	for i, o := range r.Outputs {
		names[i] = o.Name
	}
	return names
}

// Parameter names of the v2 protocol and its binary tensor extension.
const (
	paramBinaryDataSize   = "binary_data_size"
	paramBinaryData       = "binary_data"
	paramBinaryDataOutput = "binary_data_output"
	paramClassification   = "classification"
	paramTimeout          = "timeout"
	paramRoutingKey       = "routing_key"
)

// decodeInferRequest decodes an infer request body. headerLen is the
// Inference-Header-Content-Length header's value, or -1 without it: the
// first headerLen bytes are the JSON document and the rest is the binary
// section that inputs with a binary_data_size parameter take their data
// from, in input order. stickyKey, when not empty, names a request
// parameter that carries the routing key like "routing_key" does (the
// model's traffic.sticky_key); it wins over "routing_key". lim bounds the
// inputs, their element counts and BYTES element lengths; the decoder stops
// at the first value over a limit, before reserving memory for it.
//
// The tensors it returns never alias body: JSON data is parsed into fresh
// buffers and the binary section is copied once, a large one into a
// recycled buffer that the caller hands back with release once the request
// was answered. A request that gives up on its deadline may leave its
// tensors in a batch that is still running after the handler returned and
// fasthttp reused the body buffer, so sharing would let that batch read
// another request's bytes.
func decodeInferRequest(body []byte, headerLen int, stickyKey string, lim guard.Limits) (inferRequest, error) {
	var req inferRequest
	js, bin := body, []byte(nil)
	if headerLen >= 0 {
		if headerLen > len(body) {
			return req, tensor.Invalidf("Inference-Header-Content-Length %d exceeds the %d-byte body", headerLen, len(body))
		}
		js, bin = body[:headerLen], body[headerLen:]
	}
	d := decoder{s: jsonscan.New(js), stickyKey: stickyKey, lim: lim.WithDefaults()}
	if err := d.document(&req); err != nil {
		// Every path names the field it expected; this guard only keeps a
		// missed one a client error.
		return req, syntaxAsInvalid(fieldError(err, "malformed request: a value has the wrong JSON type"))
	}
	if err := d.attachBinary(&req, bin, headerLen >= 0); err != nil {
		req.release(true) // nothing has seen the copy
		return req, err
	}
	return req, nil
}

// fieldError turns jsonscan.ErrType into a message naming the field;
// syntax errors pass through, since they say where the document broke.
func fieldError(err error, format string, args ...any) error {
	if errors.Is(err, jsonscan.ErrType) {
		return tensor.Invalidf(format, args...)
	}
	return err
}

// syntaxAsInvalid makes a syntax error from the scanner a client error, with
// its message, for the one status table.
func syntaxAsInvalid(err error) error {
	if errors.Is(err, jsonscan.ErrSyntax) && !errors.Is(err, tensor.ErrInvalid) {
		return tensor.Invalidf("%s", err.Error())
	}
	return err
}

// decoder holds the state of one decodeInferRequest call.
type decoder struct {
	s         jsonscan.Scanner
	stickyKey string
	lim       guard.Limits
	// sticky says the routing key came from the stickyKey parameter, which
	// routing_key must not overwrite.
	sticky bool
	// binSizes holds each input's binary_data_size, -1 for JSON data; it
	// stays nil until an input has binary data, so JSON requests do not pay
	// for it.
	binSizes []int64
}

func (d *decoder) document(req *inferRequest) error {
	s := &d.s
	if err := s.Open('{'); err != nil {
		return fieldError(err, "the request must be a JSON object")
	}
	err := s.Members(func(k []byte) error {
		switch string(k) {
		case "id":
			id, err := s.Str()
			if err != nil {
				return fieldError(err, "field \"id\": must be a string")
			}
			req.ID = string(id)
			return nil
		case "parameters":
			return d.requestParameters(req)
		case "inputs":
			return d.inputs(req)
		case "outputs":
			return d.outputs(req)
		default:
			return s.Skip()
		}
	})
	if err != nil {
		return err
	}
	if err := s.End(); err != nil {
		return err
	}
	if len(req.Inputs) == 0 {
		return tensor.Invalidf("field \"inputs\": the request has no inputs")
	}
	return nil
}

func (d *decoder) requestParameters(req *inferRequest) error {
	s := &d.s
	if err := s.Open('{'); err != nil {
		return fieldError(err, "field \"parameters\": must be an object")
	}
	return s.Members(func(k []byte) error {
		var err error
		switch string(k) {
		case paramTimeout:
			req.Timeout, err = s.Int()
			if err != nil {
				return fieldError(err, "parameter %q: must be an integer number of microseconds", paramTimeout)
			}
		case paramRoutingKey:
			v, err := d.routingKey()
			if err != nil {
				return fieldError(err, "parameter %q: must be a string or an integer", paramRoutingKey)
			}
			if !d.sticky {
				req.RoutingKey = v
			}
		case paramBinaryDataOutput:
			if req.BinaryOutput, err = s.Bool(); err != nil {
				return fieldError(err, "parameter %q: must be true or false", paramBinaryDataOutput)
			}
		case transport.SequenceIDParameter:
			if s.Peek() == '"' {
				v, err := s.Str()
				if err != nil {
					return err
				}
				req.Sequence.ID, err = transport.SequenceStringID(string(v))
				return err
			}
			v, err := s.Int()
			if err != nil {
				return fieldError(err, "parameter %q: must be an integer or a string", transport.SequenceIDParameter)
			}
			req.Sequence.ID, err = transport.SequenceIntID(v)
			return err
		case transport.SequenceStartParameter:
			if req.Sequence.Start, err = s.Bool(); err != nil {
				return fieldError(err, "parameter %q: must be true or false", transport.SequenceStartParameter)
			}
		case transport.SequenceEndParameter:
			if req.Sequence.End, err = s.Bool(); err != nil {
				return fieldError(err, "parameter %q: must be true or false", transport.SequenceEndParameter)
			}
		default:
			if d.stickyKey != "" && string(k) == d.stickyKey {
				v, err := d.routingKey()
				if err != nil {
					return fieldError(err, "parameter %q: must be a string or an integer", d.stickyKey)
				}
				req.RoutingKey, d.sticky = v, true
				return nil
			}
			return s.Skip()
		}
		return nil
	})
}

// routingKey reads a routing key parameter: a string, or an integer taken
// as its decimal text.
func (d *decoder) routingKey() (string, error) {
	s := &d.s
	if s.Peek() == '"' {
		v, err := s.Str()
		return string(v), err
	}
	tok, frac, err := s.Number()
	if err != nil {
		return "", err
	}
	if frac {
		return "", jsonscan.ErrType
	}
	return string(tok), nil
}

func (d *decoder) inputs(req *inferRequest) error {
	s := &d.s
	if err := s.Open('['); err != nil {
		return fieldError(err, "field \"inputs\": must be an array")
	}
	for i := 0; ; i++ {
		ok, err := s.More(']', i)
		if err != nil || !ok {
			return err
		}
		if err := d.lim.CheckInputs(i + 1); err != nil {
			return err
		}
		t, size, err := d.input(i)
		if err != nil {
			return err
		}
		req.Inputs = append(req.Inputs, t)
		if size >= 0 && d.binSizes == nil {
			d.binSizes = make([]int64, len(req.Inputs)-1, len(req.Inputs)+4)
			for j := range d.binSizes {
				d.binSizes[j] = -1
			}
		}
		if d.binSizes != nil {
			d.binSizes = append(d.binSizes, size)
		}
	}
}

// span is a byte range of the JSON document.
type span struct{ start, end int }

// input reads the i-th input object. Its data is parsed as soon as the name
// and datatype are known, which is where clients put them; data that comes
// earlier is skipped over and parsed once the object ends.
func (d *decoder) input(i int) (tensor.Tensor, int64, error) {
	s := &d.s
	var (
		t                            tensor.Tensor
		haveName, haveType, haveData bool
		shape                        []int64
		deferred                     = span{-1, -1}
		binSize                      = int64(-1)
		count                        int64
	)
	if err := s.Open('{'); err != nil {
		return t, 0, fieldError(err, "input #%d: must be an object", i)
	}
	err := s.Members(func(k []byte) error {
		var err error
		switch string(k) {
		case "name":
			v, err := s.Str()
			if err != nil {
				return fieldError(err, "input #%d: \"name\" must be a string", i)
			}
			t.Name, haveName = string(v), true
		case "datatype":
			v, err := s.Str()
			if err != nil {
				return fieldError(err, "input %s: \"datatype\" must be a string", d.label(t.Name, i))
			}
			dt, ok := tensor.ParseDataType(string(v))
			if !ok {
				return tensor.Invalidf("input %s: unknown datatype %q", d.label(t.Name, i), v)
			}
			t.DataType, haveType = dt, true
		case "shape":
			if shape, err = d.shape(shape[:0]); err != nil {
				return fieldError(err, "input %s: \"shape\" must be an array of non-negative integers", d.label(t.Name, i))
			}
			if shape == nil {
				shape = []int64{}
			}
			if n, err := tensor.ElementCount(shape); err == nil {
				if err := d.lim.CheckElements(t.Name, n); err != nil {
					return err
				}
			}
		case "parameters":
			if binSize, err = d.inputParameters(t.Name, i); err != nil {
				return err
			}
		case "data":
			if haveData {
				return tensor.Invalidf("input %s: \"data\" given twice", d.label(t.Name, i))
			}
			haveData = true
			if haveName && haveType {
				want := int64(-1)
				if shape != nil {
					want, _ = tensor.ElementCount(shape)
				}
				t.Data, count, err = d.data(t.Name, t.DataType, want, d.lim)
				if err != nil {
					return err
				}
				return nil
			}
			s.Peek()
			deferred.start = s.Pos()
			if err := s.Skip(); err != nil {
				return err
			}
			deferred.end = s.Pos()
		default:
			if err := s.Skip(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return t, 0, err
	}
	switch {
	case !haveName || t.Name == "":
		return t, 0, tensor.Invalidf("input #%d: missing \"name\"", i)
	case !haveType:
		return t, 0, tensor.Invalidf("input %q: missing \"datatype\"", t.Name)
	case shape == nil:
		return t, 0, tensor.Invalidf("input %q: missing \"shape\"", t.Name)
	}
	t.Shape = shape
	n, err := tensor.ElementCount(shape)
	if err != nil {
		return t, 0, tensor.Invalidf("input %q: %v", t.Name, err)
	}
	if binSize >= 0 {
		if haveData {
			return t, 0, tensor.Invalidf("input %q: has both \"data\" and a %s parameter", t.Name, paramBinaryDataSize)
		}
		return t, binSize, nil
	}
	if !haveData {
		return t, 0, tensor.Invalidf("input %q: has neither \"data\" nor a %s parameter", t.Name, paramBinaryDataSize)
	}
	if deferred.start >= 0 {
		sub := decoder{s: s.Span(deferred.start, deferred.end)}
		if t.Data, count, err = sub.data(t.Name, t.DataType, n, d.lim); err != nil {
			return t, 0, err
		}
	}
	if count != n {
		return t, 0, tensor.Invalidf("input %q: shape %s needs %d elements, got %d", t.Name, formatShape(shape), n, count)
	}
	return t, -1, nil
}

// label names an input in an error before its name may be known.
func (d *decoder) label(name string, i int) string {
	if name == "" {
		return "#" + strconv.Itoa(i)
	}
	return strconv.Quote(name)
}

func (d *decoder) shape(dst []int64) ([]int64, error) {
	s := &d.s
	if err := s.Open('['); err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		ok, err := s.More(']', i)
		if err != nil {
			return nil, err
		}
		if !ok {
			return dst, nil
		}
		v, err := s.Uint()
		if err != nil {
			return nil, err
		}
		if dst == nil {
			dst = make([]int64, 0, 4)
		}
		dst = append(dst, v)
	}
}

// inputParameters reads an input's parameters and returns its
// binary_data_size, or -1 without one.
func (d *decoder) inputParameters(name string, i int) (int64, error) {
	s := &d.s
	size := int64(-1)
	if err := s.Open('{'); err != nil {
		return 0, fieldError(err, "input %s: \"parameters\" must be an object", d.label(name, i))
	}
	err := s.Members(func(k []byte) error {
		if string(k) != paramBinaryDataSize {
			return s.Skip()
		}
		var err error
		if size, err = s.Uint(); err != nil {
			return fieldError(err, "input %s: parameter %q must be a non-negative integer", d.label(name, i), paramBinaryDataSize)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return size, nil
}

func (d *decoder) outputs(req *inferRequest) error {
	s := &d.s
	if err := s.Open('['); err != nil {
		return fieldError(err, "field \"outputs\": must be an array")
	}
	for i := 0; ; i++ {
		ok, err := s.More(']', i)
		if err != nil || !ok {
			return err
		}
		o, err := d.output(i)
		if err != nil {
			return err
		}
		req.Outputs = append(req.Outputs, o)
	}
}

func (d *decoder) output(i int) (outputRequest, error) {
	s := &d.s
	var o outputRequest
	if err := s.Open('{'); err != nil {
		return o, fieldError(err, "output #%d: must be an object", i)
	}
	err := s.Members(func(k []byte) error {
		switch string(k) {
		case "name":
			v, err := s.Str()
			if err != nil {
				return fieldError(err, "output #%d: \"name\" must be a string", i)
			}
			o.Name = string(v)
			return nil
		case "parameters":
			return d.outputParameters(&o, i)
		default:
			return s.Skip()
		}
	})
	if err != nil {
		return o, err
	}
	if o.Name == "" {
		return o, tensor.Invalidf("output #%d: missing \"name\"", i)
	}
	return o, nil
}

func (d *decoder) outputParameters(o *outputRequest, i int) error {
	s := &d.s
	if err := s.Open('{'); err != nil {
		return fieldError(err, "output %s: \"parameters\" must be an object", d.label(o.Name, i))
	}
	return s.Members(func(k []byte) error {
		switch string(k) {
		case paramBinaryData:
			b, err := s.Bool()
			if err != nil {
				return fieldError(err, "output %s: parameter %q must be true or false", d.label(o.Name, i), paramBinaryData)
			}
			o.Binary = binaryNo
			if b {
				o.Binary = binaryYes
			}
		case paramClassification:
			// Silently returning raw scores to a client that asked for
			// class labels would be a wrong answer, not a degraded one.
			return tensor.Invalidf("output %s: parameter %q is not supported", d.label(o.Name, i), paramClassification)
		default:
			return s.Skip()
		}
		return nil
	})
}

// formatShape writes a shape as JSON does, [1,16], for error messages.
func formatShape(shape []int64) string {
	b := make([]byte, 0, 2+len(shape)*4)
	b = append(b, '[')
	for i, d := range shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return string(append(b, ']'))
}
