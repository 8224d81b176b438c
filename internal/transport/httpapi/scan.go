package httpapi

import (
	"errors"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// maxDepth bounds JSON nesting so a hostile body cannot exhaust the stack;
// real requests nest a few levels plus one per tensor dimension.
const maxDepth = 64

// scanner is a minimal, allocation-free JSON reader over one buffer. It
// validates everything it reads, including values it skips, so a malformed
// document is always a 400 whatever field the damage is in. Not safe for
// concurrent use.
type scanner struct {
	buf   []byte
	pos   int
	depth int
}

// errType reports a well-formed value of the wrong kind (a number where a
// string belongs, a negative size); callers replace it with a message
// naming the field.
var errType = errors.New("wrong JSON type")

// fieldError turns errType into a message naming the field; syntax errors
// pass through, since they say where the document broke.
func fieldError(err error, format string, args ...any) error {
	if errors.Is(err, errType) {
		return tensor.Invalidf(format, args...)
	}
	return err
}

// mismatch returns errType when a value of another kind starts next, and a
// syntax error otherwise.
func (s *scanner) mismatch(what string) error {
	switch c := s.ws(); {
	case c == '{' || c == '[' || c == '"' || c == 't' || c == 'f' || c == 'n' || c == '-' || (c >= '0' && c <= '9'):
		return errType
	case c == 0:
		return s.errorf("unexpected end of input")
	}
	return s.errorf("expected %s", what)
}

func (s *scanner) errorf(format string, args ...any) error {
	return tensor.Invalidf("malformed JSON at offset %d: "+format, append([]any{s.pos}, args...)...)
}

// ws skips whitespace and returns the next byte, or 0 at the end.
func (s *scanner) ws() byte {
	for s.pos < len(s.buf) {
		switch c := s.buf[s.pos]; c {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return c
		}
	}
	return 0
}

// end requires that nothing but whitespace follows.
func (s *scanner) end() error {
	if s.ws() != 0 {
		return s.errorf("unexpected data after the top-level value")
	}
	return nil
}

// open consumes c ('{' or '[') and counts one nesting level.
func (s *scanner) open(c byte) error {
	if s.ws() != c {
		return s.mismatch(string(c))
	}
	s.depth++
	if s.depth > maxDepth {
		return s.errorf("nested deeper than %d levels", maxDepth)
	}
	s.pos++
	return nil
}

// more reports whether another member of the object or array opened with
// the matching bracket follows; i is the number of members read so far. It
// consumes the separating comma, or the closing bracket when it returns
// false.
func (s *scanner) more(closing byte, i int) (bool, error) {
	c := s.ws()
	if c == closing {
		s.pos++
		s.depth--
		return false, nil
	}
	if i == 0 {
		if c == 0 {
			return false, s.errorf("unexpected end of input")
		}
		return true, nil
	}
	if c != ',' {
		return false, s.errorf("expected ',' or %q", closing)
	}
	s.pos++
	return true, nil
}

// key reads an object key and the colon after it.
func (s *scanner) key() ([]byte, error) {
	k, err := s.str()
	if err != nil {
		if errors.Is(err, errType) {
			return nil, s.errorf("expected a string key")
		}
		return nil, err
	}
	if s.ws() != ':' {
		return nil, s.errorf("expected ':'")
	}
	s.pos++
	return k, nil
}

// str reads a string. Without escapes the result aliases the buffer; with
// them it is a fresh slice.
func (s *scanner) str() ([]byte, error) {
	if s.ws() != '"' {
		return nil, s.mismatch("a string")
	}
	s.pos++
	start := s.pos
	for i := start; i < len(s.buf); i++ {
		switch c := s.buf[i]; {
		case c == '"':
			s.pos = i + 1
			return s.buf[start:i], nil
		case c == '\\':
			s.pos = i
			return s.unescape(s.buf[start:i:i])
		case c < 0x20:
			s.pos = i
			return nil, s.errorf("control character in string")
		}
	}
	s.pos = len(s.buf)
	return nil, s.errorf("unterminated string")
}

// unescape continues a string at s.pos (a backslash) after the plain prefix.
func (s *scanner) unescape(prefix []byte) ([]byte, error) {
	out := make([]byte, len(prefix), len(prefix)+16)
	copy(out, prefix)
	for s.pos < len(s.buf) {
		c := s.buf[s.pos]
		switch {
		case c == '"':
			s.pos++
			return out, nil
		case c < 0x20:
			return nil, s.errorf("control character in string")
		case c != '\\':
			out = append(out, c)
			s.pos++
			continue
		}
		if s.pos+1 >= len(s.buf) {
			break
		}
		e := s.buf[s.pos+1]
		s.pos += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return nil, s.errorf("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if s.pos+1 < len(s.buf) && s.buf[s.pos] == '\\' && s.buf[s.pos+1] == 'u' {
					save := s.pos
					s.pos += 2
					var ok2 bool
					if r2, ok2 = s.hex4(); !ok2 {
						return nil, s.errorf("bad \\u escape")
					}
					if utf16.DecodeRune(r, r2) == utf8.RuneError {
						s.pos = save // an unpaired surrogate; the next escape stands alone
						r2 = -1
					}
				}
				if r2 < 0 {
					r = utf8.RuneError
				} else {
					r = utf16.DecodeRune(r, r2)
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			s.pos -= 2
			return nil, s.errorf("bad escape \\%c", e)
		}
	}
	return nil, s.errorf("unterminated string")
}

func (s *scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.buf) {
		return 0, false
	}
	var r rune
	for _, c := range s.buf[s.pos : s.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	s.pos += 4
	return r, true
}

// number reads a number token as JSON's grammar defines it (no leading
// zeros, no leading '+', no hex, no NaN) and reports whether it has a
// fraction or an exponent.
func (s *scanner) number() (tok []byte, frac bool, err error) {
	start := s.pos
	b := s.buf
	i := start
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	case i == start:
		return nil, false, s.mismatch("a number")
	default:
		s.pos = i
		return nil, false, s.errorf("expected a digit")
	}
	if i < len(b) && b[i] == '.' {
		i++
		frac = true
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			s.pos = i
			return nil, false, s.errorf("expected a digit after '.'")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		frac = true
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			s.pos = i
			return nil, false, s.errorf("expected a digit in the exponent")
		}
	}
	s.pos = i
	return b[start:i], frac, nil
}

// literal consumes word ("true", "false" or "null") if it is next.
func (s *scanner) literal(word string) bool {
	if len(s.buf)-s.pos < len(word) || string(s.buf[s.pos:s.pos+len(word)]) != word {
		return false
	}
	s.pos += len(word)
	return true
}

// boolean reads true or false.
func (s *scanner) boolean() (bool, error) {
	switch s.ws() {
	case 't':
		if s.literal("true") {
			return true, nil
		}
	case 'f':
		if s.literal("false") {
			return false, nil
		}
	default:
		return false, s.mismatch("true or false")
	}
	return false, s.errorf("expected true or false")
}

// uint reads a non-negative integer that fits in an int64.
func (s *scanner) uint() (int64, error) {
	s.ws()
	tok, frac, err := s.number()
	if err != nil {
		return 0, err
	}
	if frac || tok[0] == '-' {
		return 0, errType
	}
	mag, ok := parseMagnitude(tok)
	if !ok || mag > 1<<63-1 {
		return 0, errType
	}
	return int64(mag), nil
}

// skip reads and discards one value of any kind, validating it.
func (s *scanner) skip() error {
	switch c := s.ws(); c {
	case '{':
		if err := s.open('{'); err != nil {
			return err
		}
		for i := 0; ; i++ {
			ok, err := s.more('}', i)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			if _, err := s.key(); err != nil {
				return err
			}
			if err := s.skip(); err != nil {
				return err
			}
		}
	case '[':
		if err := s.open('['); err != nil {
			return err
		}
		for i := 0; ; i++ {
			ok, err := s.more(']', i)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			if err := s.skip(); err != nil {
				return err
			}
		}
	case '"':
		_, err := s.str()
		return err
	case 't', 'f':
		_, err := s.boolean()
		return err
	case 'n':
		if s.literal("null") {
			return nil
		}
		return s.errorf("expected a value")
	case 0:
		return s.errorf("unexpected end of input")
	default:
		_, _, err := s.number()
		return err
	}
}

// parseMagnitude parses the digits of a JSON integer token (an optional
// leading '-' is ignored) into a uint64, reporting overflow.
func parseMagnitude(tok []byte) (uint64, bool) {
	if len(tok) > 0 && tok[0] == '-' {
		tok = tok[1:]
	}
	var n uint64
	for _, c := range tok {
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
