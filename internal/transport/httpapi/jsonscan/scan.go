package jsonscan

import (
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds JSON nesting so a hostile body cannot exhaust the stack;
// real requests nest a few levels plus one per tensor dimension.
const maxDepth = 64

// Scanner is a minimal, allocation-free JSON reader over one buffer. It
// validates everything it reads, including values it skips, so a malformed
// document is always an error whatever value the damage is in. The caller
// drives it: it reads the value it expects next, and the Scanner checks
// that the value is there. A Scanner is a small value, cheap to copy; it is
// not safe for concurrent use.
type Scanner struct {
	buf   []byte
	pos   int
	depth int
}

// ErrType reports a well-formed value of the wrong kind (a number where a
// string belongs, a negative size); callers replace it with a message
// naming the field.
var ErrType = errors.New("wrong JSON type")

// ErrSyntax is wrapped by every error for a malformed document; the
// message says what was expected and at which byte offset.
var ErrSyntax = errors.New("malformed JSON")

// syntaxError is a malformed document.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }
func (e *syntaxError) Unwrap() error { return ErrSyntax }

// New returns a Scanner at the start of buf. The strings it returns may
// alias buf.
func New(buf []byte) Scanner { return Scanner{buf: buf} }

// Span returns a Scanner over the value at buf[start:end], which s has
// read before (skipped, typically), at the nesting depth s had there, so
// the value can be read again once what it depends on is known.
func (s *Scanner) Span(start, end int) Scanner {
	return Scanner{buf: s.buf[:end], pos: start, depth: s.depth}
}

// Buf returns the whole buffer s reads, for callers that read a run of
// values themselves with SkipWS and ScanNumber.
func (s *Scanner) Buf() []byte { return s.buf }

// Pos returns the offset of the next byte s reads.
func (s *Scanner) Pos() int { return s.pos }

// Seek moves s to pos, which must be where a caller that read from Buf
// itself stopped: between two tokens, never inside one.
func (s *Scanner) Seek(pos int) { s.pos = pos }

// mismatch returns ErrType when a value of another kind starts next, and a
// syntax error otherwise.
func (s *Scanner) mismatch(what string) error {
	switch c := s.Peek(); {
	case c == '{' || c == '[' || c == '"' || c == 't' || c == 'f' || c == 'n' || c == '-' || (c >= '0' && c <= '9'):
		return ErrType
	case c == 0:
		return s.errorf("unexpected end of input")
	}
	return s.errorf("expected %s", what)
}

func (s *Scanner) errorf(format string, args ...any) error {
	return &syntaxError{msg: fmt.Sprintf("malformed JSON at offset %d: "+format, append([]any{s.pos}, args...)...)}
}

// Peek skips whitespace and returns the next byte, or 0 at the end,
// without consuming it.
func (s *Scanner) Peek() byte {
	s.pos = SkipWS(s.buf, s.pos)
	if s.pos < len(s.buf) {
		return s.buf[s.pos]
	}
	return 0
}

// SkipWS returns the index of the first byte from b[i] on that is not JSON
// whitespace, or len(b).
func SkipWS(b []byte, i int) int {
	for i < len(b) && isSpace[b[i]] {
		i++
	}
	return i
}

// isSpace marks JSON's four whitespace bytes; a table lookup is one load
// where a switch is several compares.
var isSpace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

// Members reads the rest of an object whose '{' has been read: for each
// member it reads the key and calls each with it, which must read the
// value. It stops at the closing '}' or at the first error.
func (s *Scanner) Members(each func(key []byte) error) error {
	for i := 0; ; i++ {
		ok, err := s.More('}', i)
		if err != nil || !ok {
			return err
		}
		k, err := s.Key()
		if err != nil {
			return err
		}
		if err := each(k); err != nil {
			return err
		}
	}
}

// End requires that nothing but whitespace follows.
func (s *Scanner) End() error {
	// Peek's 0 is also a NUL byte in the buffer, which is data too.
	if s.Peek(); s.pos < len(s.buf) {
		return s.errorf("unexpected data after the top-level value")
	}
	return nil
}

// Open consumes c ('{' or '[') and counts one nesting level.
func (s *Scanner) Open(c byte) error {
	if s.Peek() != c {
		return s.mismatch(string(c))
	}
	s.depth++
	if s.depth > maxDepth {
		return s.errorf("nested deeper than %d levels", maxDepth)
	}
	s.pos++
	return nil
}

// More reports whether another member of the object or array opened with
// the matching bracket follows; i is the number of members read so far. It
// consumes the separating comma, or the closing bracket when it returns
// false.
func (s *Scanner) More(closing byte, i int) (bool, error) {
	c := s.Peek()
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

// Key reads an object key and the colon after it.
func (s *Scanner) Key() ([]byte, error) {
	k, err := s.Str()
	if err != nil {
		if errors.Is(err, ErrType) {
			return nil, s.errorf("expected a string key")
		}
		return nil, err
	}
	if s.Peek() != ':' {
		return nil, s.errorf("expected ':'")
	}
	s.pos++
	return k, nil
}

// Str reads a string. Without escapes the result aliases the buffer; with
// them it is a fresh slice.
func (s *Scanner) Str() ([]byte, error) {
	if s.Peek() != '"' {
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
func (s *Scanner) unescape(prefix []byte) ([]byte, error) {
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

func (s *Scanner) hex4() (rune, bool) {
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

// literal consumes word ("true", "false" or "null") if it is next.
func (s *Scanner) literal(word string) bool {
	if len(s.buf)-s.pos < len(word) || string(s.buf[s.pos:s.pos+len(word)]) != word {
		return false
	}
	s.pos += len(word)
	return true
}

// Bool reads true or false.
func (s *Scanner) Bool() (bool, error) {
	switch s.Peek() {
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

// Uint reads a non-negative integer that fits in an int64.
func (s *Scanner) Uint() (int64, error) {
	s.Peek()
	tok, frac, err := s.Number()
	if err != nil {
		return 0, err
	}
	if frac || tok[0] == '-' {
		return 0, ErrType
	}
	mag, ok := ParseMagnitude(tok)
	if !ok || mag > 1<<63-1 {
		return 0, ErrType
	}
	return int64(mag), nil
}

// Skip reads and discards one value of any kind, validating it.
func (s *Scanner) Skip() error {
	switch c := s.Peek(); c {
	case '{':
		if err := s.Open('{'); err != nil {
			return err
		}
		for i := 0; ; i++ {
			ok, err := s.More('}', i)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			if _, err := s.Key(); err != nil {
				return err
			}
			if err := s.Skip(); err != nil {
				return err
			}
		}
	case '[':
		if err := s.Open('['); err != nil {
			return err
		}
		for i := 0; ; i++ {
			ok, err := s.More(']', i)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			if err := s.Skip(); err != nil {
				return err
			}
		}
	case '"':
		_, err := s.Str()
		return err
	case 't', 'f':
		_, err := s.Bool()
		return err
	case 'n':
		if s.literal("null") {
			return nil
		}
		return s.errorf("expected a value")
	case 0:
		return s.errorf("unexpected end of input")
	default:
		_, _, err := s.Number()
		return err
	}
}

// Int reads an integer that fits in an int64.
func (s *Scanner) Int() (int64, error) {
	s.Peek()
	tok, frac, err := s.Number()
	if err != nil {
		return 0, err
	}
	mag, ok := ParseMagnitude(tok)
	if frac || !ok || mag > 1<<63 || (mag == 1<<63 && tok[0] != '-') {
		return 0, ErrType
	}
	if tok[0] == '-' {
		return int64(-mag), nil
	}
	return int64(mag), nil
}
