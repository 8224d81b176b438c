package httpapi

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	"github.com/onnxserve/onnxserve/internal/transport/httpapi/jsonscan"
)

// An input's "data" field: JSON values, flat or nested, into the tensor
// layout, element by element, within the request's limits.

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
		n := min(want, int64(len(s.Buf())-s.Pos()+1)/2)
		buf = make([]byte, 0, n*int64(size))
	}
	// The parser works on a copy of the scanner, written back after: a
	// pointer to d's jsonscan.Scanner inside p would make escape analysis move d to
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
	s    jsonscan.Scanner
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
	if s.Peek() != '[' {
		return p.element()
	}
	if err := s.Open('['); err != nil {
		return tensor.Invalidf("input %q: %v", p.name, err)
	}
	float := isFloat(p.dt)
	for i := 0; ; i++ {
		ok, err := s.More(']', i)
		if err != nil {
			return tensor.Invalidf("input %q: \"data\": %v", p.name, err)
		}
		if !ok {
			return nil
		}
		switch c := s.Peek(); {
		case c == '[':
			err = p.value()
		case float && (c == '-' || c-'0' <= 9):
			err = p.floatRun()
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

// floatRun reads the elements of a float array from the number at the
// scanner's position on, for as long as numbers follow one another
// separated by commas. It is element and More fused for the common case, a
// flat array of numbers, and keeps the output in a local slice, since
// storing it to p for each element would cost a write barrier. It stops
// before the first byte that is not a comma between two numbers (the
// array's closing ']', a nested array, another kind of value, a syntax
// error), where value's loop takes over and gives its usual errors.
func (p *dataParser) floatRun() error {
	b, i, out := p.s.Buf(), p.s.Pos(), p.buf
	fp32 := p.dt == tensor.FP32
	var n jsonscan.Number
	var err error
	for {
		if p.n >= p.maxElements {
			p.s.Seek(i)
			p.buf = out
			return p.overLimit()
		}
		if !jsonscan.ScanNumber(b, i, &n) {
			p.buf = out
			return p.errorf("malformed number")
		}
		// FP32 takes the fast conversion here rather than through
		// appendFloat: a call and its frame are a tenth of the time a
		// number takes.
		var f float32
		ok := false
		if fp32 {
			f, ok = n.Float32()
		}
		if ok {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(f))
		} else if out, err = p.appendFloat(out, &n, b[i:n.End]); err != nil {
			p.buf = out
			return err
		}
		p.n++
		i = n.End
		// Compact JSON has the comma and the next number right here; the
		// whitespace skips are for the rest.
		if i >= len(b) || b[i] != ',' {
			i = jsonscan.SkipWS(b, i)
		}
		if i >= len(b) || b[i] != ',' {
			break
		}
		j := i + 1
		if j >= len(b) || b[j] != '-' && b[j]-'0' > 9 {
			if j = jsonscan.SkipWS(b, j); j >= len(b) || b[j] != '-' && b[j]-'0' > 9 {
				break
			}
		}
		i = j
	}
	p.s.Seek(i)
	p.buf = out
	return nil
}

func (p *dataParser) element() error {
	s := &p.s
	if p.n >= p.maxElements {
		return p.overLimit()
	}
	switch p.dt {
	case tensor.Bool:
		v, err := s.Bool()
		if err != nil {
			return p.errorf("expected true or false")
		}
		b := byte(0)
		if v {
			b = 1
		}
		p.buf = append(p.buf, b)
	case tensor.Bytes:
		if s.Peek() != '"' {
			return p.errorf("expected a string")
		}
		v, err := s.Str()
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
	c := p.s.Peek()
	if c != '-' && (c < '0' || c > '9') {
		return nil, false, p.errorf("expected a number")
	}
	tok, frac, err := p.s.Number()
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
	mag, ok := jsonscan.ParseMagnitude(tok)
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
	if c := s.Peek(); c != '-' && c-'0' > 9 {
		return p.errorf("expected a number")
	}
	var n jsonscan.Number
	b, i := s.Buf(), s.Pos()
	if !jsonscan.ScanNumber(b, i, &n) {
		return p.errorf("malformed number")
	}
	var err error
	p.buf, err = p.appendFloat(p.buf, &n, b[i:n.End])
	s.Seek(n.End)
	return err
}

// appendFloat appends number n, whose text is tok, to out in p.dt's layout.
func (p *dataParser) appendFloat(out []byte, n *jsonscan.Number, tok []byte) ([]byte, error) {
	if p.dt == tensor.FP64 {
		f, ok := n.Float64()
		if !ok {
			var err error
			if f, err = strconv.ParseFloat(string(tok), 64); err != nil {
				return out, p.errorf("%s is out of range for FP64", tok)
			}
		}
		return binary.LittleEndian.AppendUint64(out, math.Float64bits(f)), nil
	}
	f, ok := n.Float32()
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
