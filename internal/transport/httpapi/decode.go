package httpapi

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
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
	Inputs       []tensor.Tensor
	Outputs      []outputRequest
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
// buffers and the binary section is copied once. A request that gives up on
// its deadline may leave its tensors in a batch that is still running after
// the handler returned and fasthttp reused the body buffer, so sharing would
// let that batch read another request's bytes.
func decodeInferRequest(body []byte, headerLen int, stickyKey string, lim guard.Limits) (inferRequest, error) {
	var req inferRequest
	js, bin := body, []byte(nil)
	if headerLen >= 0 {
		if headerLen > len(body) {
			return req, tensor.Invalidf("Inference-Header-Content-Length %d exceeds the %d-byte body", headerLen, len(body))
		}
		js, bin = body[:headerLen], body[headerLen:]
	}
	d := decoder{s: scanner{buf: js}, stickyKey: stickyKey, lim: lim.WithDefaults()}
	if err := d.document(&req); err != nil {
		// Every path names the field it expected; this guard only keeps a
		// missed one a client error.
		return req, fieldError(err, "malformed request: a value has the wrong JSON type")
	}
	if err := d.attachBinary(&req, bin, headerLen >= 0); err != nil {
		return req, err
	}
	return req, nil
}

// decoder holds the state of one decodeInferRequest call.
type decoder struct {
	s         scanner
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
	if err := s.open('{'); err != nil {
		return fieldError(err, "the request must be a JSON object")
	}
	err := s.members(func(k []byte) error {
		switch string(k) {
		case "id":
			id, err := s.str()
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
			return s.skip()
		}
	})
	if err != nil {
		return err
	}
	if err := s.end(); err != nil {
		return err
	}
	if len(req.Inputs) == 0 {
		return tensor.Invalidf("field \"inputs\": the request has no inputs")
	}
	return nil
}

func (d *decoder) requestParameters(req *inferRequest) error {
	s := &d.s
	if err := s.open('{'); err != nil {
		return fieldError(err, "field \"parameters\": must be an object")
	}
	return s.members(func(k []byte) error {
		var err error
		switch string(k) {
		case paramTimeout:
			req.Timeout, err = d.signed()
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
			if req.BinaryOutput, err = s.boolean(); err != nil {
				return fieldError(err, "parameter %q: must be true or false", paramBinaryDataOutput)
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
			return s.skip()
		}
		return nil
	})
}

// routingKey reads a routing key parameter: a string, or an integer taken
// as its decimal text.
func (d *decoder) routingKey() (string, error) {
	s := &d.s
	if s.ws() == '"' {
		v, err := s.str()
		return string(v), err
	}
	tok, frac, err := s.number()
	if err != nil {
		return "", err
	}
	if frac {
		return "", errType
	}
	return string(tok), nil
}

// signed reads an integer that fits in an int64.
func (d *decoder) signed() (int64, error) {
	s := &d.s
	s.ws()
	tok, frac, err := s.number()
	if err != nil {
		return 0, err
	}
	mag, ok := parseMagnitude(tok)
	if frac || !ok || mag > 1<<63 || (mag == 1<<63 && tok[0] != '-') {
		return 0, errType
	}
	if tok[0] == '-' {
		return int64(-mag), nil
	}
	return int64(mag), nil
}

func (d *decoder) inputs(req *inferRequest) error {
	s := &d.s
	if err := s.open('['); err != nil {
		return fieldError(err, "field \"inputs\": must be an array")
	}
	for i := 0; ; i++ {
		ok, err := s.more(']', i)
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
	if err := s.open('{'); err != nil {
		return t, 0, fieldError(err, "input #%d: must be an object", i)
	}
	err := s.members(func(k []byte) error {
		var err error
		switch string(k) {
		case "name":
			v, err := s.str()
			if err != nil {
				return fieldError(err, "input #%d: \"name\" must be a string", i)
			}
			t.Name, haveName = string(v), true
		case "datatype":
			v, err := s.str()
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
			s.ws()
			deferred.start = s.pos
			if err := s.skip(); err != nil {
				return err
			}
			deferred.end = s.pos
		default:
			if err := s.skip(); err != nil {
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
		sub := decoder{s: scanner{buf: s.buf[:deferred.end], pos: deferred.start, depth: s.depth}}
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
	if err := s.open('['); err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		ok, err := s.more(']', i)
		if err != nil {
			return nil, err
		}
		if !ok {
			return dst, nil
		}
		v, err := s.uint()
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
	if err := s.open('{'); err != nil {
		return 0, fieldError(err, "input %s: \"parameters\" must be an object", d.label(name, i))
	}
	err := s.members(func(k []byte) error {
		if string(k) != paramBinaryDataSize {
			return s.skip()
		}
		var err error
		if size, err = s.uint(); err != nil {
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
	if err := s.open('['); err != nil {
		return fieldError(err, "field \"outputs\": must be an array")
	}
	for i := 0; ; i++ {
		ok, err := s.more(']', i)
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
	if err := s.open('{'); err != nil {
		return o, fieldError(err, "output #%d: must be an object", i)
	}
	err := s.members(func(k []byte) error {
		switch string(k) {
		case "name":
			v, err := s.str()
			if err != nil {
				return fieldError(err, "output #%d: \"name\" must be a string", i)
			}
			o.Name = string(v)
			return nil
		case "parameters":
			return d.outputParameters(&o, i)
		default:
			return s.skip()
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
	if err := s.open('{'); err != nil {
		return fieldError(err, "output %s: \"parameters\" must be an object", d.label(o.Name, i))
	}
	return s.members(func(k []byte) error {
		switch string(k) {
		case paramBinaryData:
			b, err := s.boolean()
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
			return s.skip()
		}
		return nil
	})
}

// data parses a data value, flat or nested, into a fresh buffer in the
// tensor layout and returns it with its element count. want is the element
// count the shape asks for, or -1 when the shape is not known yet; it only
// sizes the buffer.
func (d *decoder) data(name string, dt tensor.DataType, want int64, lim guard.Limits) ([]byte, int64, error) {
	s := &d.s
	var buf []byte
	if size := dt.Size(); size > 0 && want > 0 {
		// Every element takes at least two bytes of JSON ("0,"), so the
		// rest of the document bounds how much a lying shape can reserve.
		n := min(want, int64(len(s.buf)-s.pos+1)/2)
		buf = make([]byte, 0, n*int64(size))
	}
	// The parser works on a copy of the scanner, written back after: a
	// pointer to d's scanner inside p would make escape analysis move d to
	// the heap, since p's error paths leak its contents.
	p := dataParser{s: *s, name: name, dt: dt, buf: buf, maxElements: lim.MaxTensorElements, maxBytes: lim.MaxBytesElement}
	err := p.value()
	*s = p.s
	if err != nil {
		return nil, 0, err
	}
	if p.buf == nil {
		p.buf = []byte{}
	}
	return p.buf, p.n, nil
}

// dataParser appends the elements of one data value to buf.
type dataParser struct {
	s    scanner
	name string
	dt   tensor.DataType
	buf  []byte
	n    int64
	// maxElements and maxBytes are the request's limits (with defaults
	// applied): data with no shape before it is bounded while it is read.
	maxElements, maxBytes int64
}

func (p *dataParser) value() error {
	s := &p.s
	if s.ws() != '[' {
		return p.element()
	}
	if err := s.open('['); err != nil {
		return tensor.Invalidf("input %q: %v", p.name, err)
	}
	float := isFloat(p.dt)
	for i := 0; ; i++ {
		ok, err := s.more(']', i)
		if err != nil {
			return tensor.Invalidf("input %q: \"data\": %v", p.name, err)
		}
		if !ok {
			return nil
		}
		switch c := s.ws(); {
		case c == '[':
			err = p.value()
		case float && (c == '-' || c-'0' <= 9):
			var closed bool
			if closed, err = p.floatRun(); closed {
				return nil
			}
		default:
			err = p.element()
		}
		if err != nil {
			return err
		}
	}
}

// isFloat reports whether elements of dt are written as JSON numbers and
// stored as floats.
func isFloat(dt tensor.DataType) bool {
	return dt == tensor.FP32 || dt == tensor.FP64 || dt == tensor.FP16 || dt == tensor.BF16
}

// floatRun reads the elements of a float array from the number at s.pos
// on, for as long as numbers follow one another separated by commas, and
// reports whether it read the array's closing ']'. It is element and more
// fused for the common case, a flat array of numbers, and keeps the output
// in a local slice, since storing it to p for each element would cost a
// write barrier. Anything else after a number (a nested array, another kind
// of value, a syntax error) ends the run before the comma, where value's
// loop takes over and gives its usual errors.
func (p *dataParser) floatRun() (closed bool, err error) {
	b, i, out := p.s.buf, p.s.pos, p.buf
	fp32 := p.dt == tensor.FP32
	var n numberToken
	for {
		if p.n >= p.maxElements {
			p.s.pos, p.buf = i, out
			return false, p.overLimit()
		}
		if scanNumber(b, i, &n) != numberOK {
			p.buf = out
			return false, p.errorf("malformed number")
		}
		// FP32 takes the fast conversion here rather than through
		// appendFloat: a call and its frame are a tenth of the time a
		// number takes.
		var f float32
		ok := false
		if fp32 {
			f, ok = n.float32()
		}
		if ok {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(f))
		} else if out, err = p.appendFloat(out, &n, b[i:n.end]); err != nil {
			p.buf = out
			return false, err
		}
		p.n++
		i = n.end
		// Compact JSON has the comma and the next number right here; the
		// whitespace skips are for the rest.
		if i >= len(b) || b[i] != ',' && b[i] != ']' {
			i = skipWS(b, i)
		}
		if i < len(b) && b[i] == ']' {
			p.s.pos, p.buf = i+1, out
			p.s.depth--
			return true, nil
		}
		if i >= len(b) || b[i] != ',' {
			break
		}
		j := i + 1
		if j >= len(b) || b[j] != '-' && b[j]-'0' > 9 {
			if j = skipWS(b, j); j >= len(b) || b[j] != '-' && b[j]-'0' > 9 {
				break
			}
		}
		i = j
	}
	p.s.pos, p.buf = i, out
	return false, nil
}

func (p *dataParser) element() error {
	s := &p.s
	if p.n >= p.maxElements {
		return p.overLimit()
	}
	switch p.dt {
	case tensor.Bool:
		v, err := s.boolean()
		if err != nil {
			return p.errorf("expected true or false")
		}
		b := byte(0)
		if v {
			b = 1
		}
		p.buf = append(p.buf, b)
	case tensor.Bytes:
		if s.ws() != '"' {
			return p.errorf("expected a string")
		}
		v, err := s.str()
		if err != nil {
			return tensor.Invalidf("input %q: element %d: %v", p.name, p.n, err)
		}
		if int64(len(v)) > p.maxBytes {
			return guard.Limits{MaxBytesElement: p.maxBytes}.CheckBytesElement(p.name, p.n, int64(len(v)))
		}
		p.buf = tensor.AppendBytesElement(p.buf, v)
	case tensor.FP16, tensor.BF16, tensor.FP32, tensor.FP64:
		if err := p.float(); err != nil {
			return err
		}
	default:
		if err := p.integer(); err != nil {
			return err
		}
	}
	p.n++
	return nil
}

// overLimit is the error for one element more than maxElements.
func (p *dataParser) overLimit() error {
	return guard.Limits{MaxTensorElements: p.maxElements}.CheckElements(p.name, p.n+1)
}

func (p *dataParser) errorf(format string, args ...any) error {
	return tensor.Invalidf("input %q: element %d: "+format, append([]any{p.name, p.n}, args...)...)
}

func (p *dataParser) token() ([]byte, bool, error) {
	c := p.s.ws()
	if c != '-' && (c < '0' || c > '9') {
		return nil, false, p.errorf("expected a number")
	}
	tok, frac, err := p.s.number()
	if err != nil {
		return nil, false, p.errorf("malformed number")
	}
	return tok, frac, nil
}

// intBits holds the width of each integer type and whether it is signed.
var intBits = [...]struct {
	bits   uint
	signed bool
}{
	tensor.Uint8: {8, false}, tensor.Uint16: {16, false}, tensor.Uint32: {32, false}, tensor.Uint64: {64, false},
	tensor.Int8: {8, true}, tensor.Int16: {16, true}, tensor.Int32: {32, true}, tensor.Int64: {64, true},
}

func (p *dataParser) integer() error {
	tok, frac, err := p.token()
	if err != nil {
		return err
	}
	if frac {
		return p.errorf("%s is not an integer (%s)", tok, p.dt)
	}
	kind := intBits[p.dt]
	neg := tok[0] == '-'
	mag, ok := parseMagnitude(tok)
	var limit uint64
	switch {
	case kind.signed && neg:
		limit = 1 << (kind.bits - 1)
	case kind.signed:
		limit = 1<<(kind.bits-1) - 1
	case neg:
		limit = 0
	default:
		limit = 1<<(kind.bits-1) - 1 + 1<<(kind.bits-1)
	}
	if !ok || mag > limit {
		return p.errorf("%s is out of range for %s", tok, p.dt)
	}
	v := mag
	if neg {
		v = -mag
	}
	switch kind.bits {
	case 8:
		p.buf = append(p.buf, byte(v))
	case 16:
		p.buf = binary.LittleEndian.AppendUint16(p.buf, uint16(v))
	case 32:
		p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(v))
	default:
		p.buf = binary.LittleEndian.AppendUint64(p.buf, v)
	}
	return nil
}

func (p *dataParser) float() error {
	s := &p.s
	if c := s.ws(); c != '-' && c-'0' > 9 {
		return p.errorf("expected a number")
	}
	var n numberToken
	if scanNumber(s.buf, s.pos, &n) != numberOK {
		return p.errorf("malformed number")
	}
	var err error
	p.buf, err = p.appendFloat(p.buf, &n, s.buf[s.pos:n.end])
	s.pos = n.end
	return err
}

// appendFloat appends number n, whose text is tok, to out in p.dt's layout.
func (p *dataParser) appendFloat(out []byte, n *numberToken, tok []byte) ([]byte, error) {
	if p.dt == tensor.FP64 {
		f, ok := n.float64()
		if !ok {
			var err error
			if f, err = strconv.ParseFloat(string(tok), 64); err != nil {
				return out, p.errorf("%s is out of range for FP64", tok)
			}
		}
		return binary.LittleEndian.AppendUint64(out, math.Float64bits(f)), nil
	}
	f, ok := n.float32()
	if !ok {
		f64, err := strconv.ParseFloat(string(tok), 32)
		if err != nil {
			return out, p.errorf("%s is out of range for %s", tok, p.dt)
		}
		f = float32(f64)
	}
	switch p.dt {
	case tensor.FP32:
		return binary.LittleEndian.AppendUint32(out, math.Float32bits(f)), nil
	case tensor.FP16:
		h := tensor.Float32ToFP16(f)
		if h&0x7fff == 0x7c00 {
			return out, p.errorf("%s is out of range for FP16", tok)
		}
		return binary.LittleEndian.AppendUint16(out, h), nil
	default:
		h := tensor.Float32ToBF16(f)
		if h&0x7fff == 0x7f80 {
			return out, p.errorf("%s is out of range for BF16", tok)
		}
		return binary.LittleEndian.AppendUint16(out, h), nil
	}
}

var pow10f64 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// float64 converts n exactly when the mantissa and the power of ten are
// both exact float64 values: one correctly rounded multiply or divide then
// gives the correctly rounded result. Most numbers clients send qualify;
// for the others ok is false and the caller asks strconv.
func (n *numberToken) float64() (f float64, ok bool) {
	switch {
	case n.long:
		return 0, false
	case n.mant == 0:
		return math.Copysign(0, sign(n.neg)), true
	case n.mant > 1<<53 || n.exp < -22 || n.exp > 22:
		return 0, false
	}
	f = float64(n.mant)
	if n.exp < 0 {
		f /= pow10f64[-n.exp]
	} else {
		f *= pow10f64[n.exp]
	}
	if n.neg {
		f = -f
	}
	return f, true
}

// Powers of ten for float32 conversions, from 1e-64 (a 19-digit mantissa
// times it is still below float32's normal range) to 1e38 (above it).
const (
	minPow10f32 = -64
	maxPow10f32 = 38
)

// pow10f32 holds 10^k for k from minPow10f32 on, each the float64 nearest
// to it: strconv rounds correctly, where computing the powers would not.
var pow10f32 = func() (t [maxPow10f32 - minPow10f32 + 1]float64) {
	for i := range t {
		t[i], _ = strconv.ParseFloat("1e"+strconv.Itoa(i+minPow10f32), 64)
	}
	return t
}()

// float32 converts n to the nearest float32 through one float64 multiply,
// and reports false, leaving n to strconv, where that cannot be proved
// right.
//
// float64(mant), pow10f32[exp] and their product each round once, by at
// most 2^-53 relatively, so the product is within a little over 3 units in
// its last place (ulps) of the exact value. The exact value and the product
// then round to the same float32 unless a float32 rounding boundary, a
// halfway point between two float32 neighbours, lies between them. Within
// the normal float32 range a halfway point is a float64 whose low 29
// mantissa bits are 1<<28, so a product 4 or more ulps away from that
// pattern has none within reach; the margin of 8 is to spare, and costs a
// fallback for one number in tens of millions. A power of two, where the
// ulp changes, has those bits zero, far from the pattern. Results outside
// the normal float32 range, and mantissas of more than 19 digits, go to
// strconv. A division by an exact power of ten would need no margin, but
// it takes several times as long as the multiply.
func (n *numberToken) float32() (float32, bool) {
	switch {
	case n.long:
		return 0, false
	case n.mant == 0:
		return float32(math.Copysign(0, sign(n.neg))), true
	case n.exp < minPow10f32 || n.exp > maxPow10f32:
		return 0, false
	}
	f := float64(n.mant) * pow10f32[n.exp-minPow10f32]
	const margin = 8
	if f < 0x1p-126 || f > math.MaxFloat32 || math.Float64bits(f)&(1<<29-1)-(1<<28-margin) <= 2*margin {
		return 0, false
	}
	if n.neg {
		f = -f
	}
	return float32(f), true
}

func sign(neg bool) float64 {
	if neg {
		return -1
	}
	return 1
}

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
