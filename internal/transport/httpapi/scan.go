package httpapi

import (
	"encoding/binary"
	"errors"
	"math/bits"
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
	s.pos = skipWS(s.buf, s.pos)
	if s.pos < len(s.buf) {
		return s.buf[s.pos]
	}
	return 0
}

// skipWS returns the index of the first byte from b[i] on that is not JSON
// whitespace, or len(b).
func skipWS(b []byte, i int) int {
	for i < len(b) && isSpace[b[i]] {
		i++
	}
	return i
}

// isSpace marks JSON's four whitespace bytes; a table lookup is one load
// where a switch is several compares.
var isSpace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

// members reads the rest of an object whose '{' has been read: for each
// member it reads the key and calls each with it, which must read the
// value. It stops at the closing '}' or at the first error.
func (s *scanner) members(each func(key []byte) error) error {
	for i := 0; ; i++ {
		ok, err := s.more('}', i)
		if err != nil || !ok {
			return err
		}
		k, err := s.key()
		if err != nil {
			return err
		}
		if err := each(k); err != nil {
			return err
		}
	}
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
	var n numberToken
	if bad := scanNumber(s.buf, s.pos, &n); bad != numberOK {
		return nil, false, s.numberError(n.end, bad)
	}
	tok = s.buf[s.pos:n.end]
	s.pos = n.end
	return tok, n.frac, nil
}

// numberError turns scanNumber's verdict into the scanner's error, with the
// offset where the token went wrong.
func (s *scanner) numberError(at int, bad numberSyntax) error {
	if bad == numberNone {
		return s.mismatch("a number")
	}
	s.pos = at
	switch bad {
	case numberNoFraction:
		return s.errorf("expected a digit after '.'")
	case numberNoExponent:
		return s.errorf("expected a digit in the exponent")
	}
	return s.errorf("expected a digit")
}

// numberSyntax says what is wrong with a number token, if anything.
type numberSyntax uint8

const (
	numberOK numberSyntax = iota
	// numberNone: neither '-' nor a digit, so no number starts here.
	numberNone
	// numberNoDigit: a '-' without a digit after it.
	numberNoDigit
	// numberNoFraction: a '.' without a digit after it.
	numberNoFraction
	// numberNoExponent: an 'e' without a digit after it or its sign.
	numberNoExponent
)

// numberToken is one number as scanNumber reads it: the token ends at end,
// and its value is mant × 10^exp, negative when neg.
type numberToken struct {
	// end is the index just past the token, or where it went wrong.
	end  int
	mant uint64
	exp  int
	neg  bool
	// frac says the token has a fraction or an exponent.
	frac bool
	// long says the token has more than 19 significant digits, which mant
	// may not hold: its value is then meaningless.
	long bool
}

// scanNumber reads the number token that starts at b[i] into n and, in the
// same pass, its decimal mantissa and exponent, so float data is read once.
// The exponent saturates far beyond any float's range, so a hostile one
// cannot overflow it.
//
// n is filled through a pointer rather than returned: a returned struct is
// spilled with narrow stores and copied with wide loads, which the CPU
// cannot forward, and that stall cost more than the parsing.
func scanNumber(b []byte, i int, n *numberToken) numberSyntax {
	*n = numberToken{}
	start := i
	if i < len(b) && b[i] == '-' {
		n.neg = true
		i++
	}
	if i >= len(b) || b[i]-'0' > 9 {
		n.end = i
		if i == start {
			return numberNone
		}
		return numberNoDigit
	}
	first := i
	if b[i] == '0' {
		i++ // JSON allows no other digit after a leading zero
	} else {
		i, n.mant = digitRun(b, i, 0)
	}
	digits := i - first
	if i < len(b) && b[i] == '.' {
		i++
		frac := i
		i, n.mant = digitRun(b, i, n.mant)
		if i == frac {
			n.end = i
			return numberNoFraction
		}
		digits += i - frac
		n.exp = frac - i
		n.frac = true
	}
	if digits > 19 {
		n.long = significant(b, first, digits) > 19
	}
	if i < len(b) && b[i]|0x20 == 'e' { // 'e' or 'E'
		i++
		n.frac = true
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		exp := i
		e := 0
		for ; i < len(b) && b[i]-'0' <= 9; i++ {
			if e < 100000 {
				e = e*10 + int(b[i]-'0')
			}
		}
		if i == exp {
			n.end = i
			return numberNoExponent
		}
		if eneg {
			e = -e
		}
		n.exp += e
	}
	n.end = i
	return numberOK
}

// significant counts the significant digits of a mantissa of digits digits
// starting at b[first]: all but the zeros before the first non-zero one,
// which a JSON number has only in the form "0.000123". Zeros add nothing to
// a mantissa that is still zero, so scanNumber counts them only when the
// count decides whether the mantissa fits.
func significant(b []byte, first, digits int) int {
	if b[first] != '0' {
		return digits
	}
	z := first + 2 // past "0."
	for z < len(b) && b[z] == '0' {
		z++
	}
	return digits - (z - first - 1) // the zeros after the point and the one before
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

// digitRun reads the digits from b[i] on into m and returns the index after
// them. m wraps around after 19 digits; scanNumber's caller knows not to
// trust it then.
//
// It reads sixteen bytes at a time, as two words, while sixteen are left.
// The digits a client prints for a float32 fill seven, eight or nine bytes;
// taking the second word's digits only when the first word is all digits,
// by masking rather than by a branch, spares the mispredicted branch that
// deciding between those lengths one word at a time costs.
func digitRun(b []byte, i int, m uint64) (int, uint64) {
	for i+16 <= len(b) {
		n1, d1 := leadingDigits(binary.LittleEndian.Uint64(b[i:]))
		n2, d2 := leadingDigits(binary.LittleEndian.Uint64(b[i+8:]))
		keep := -(n1 >> 3) // all ones when n1 is 8, zero when it is less
		n2, d2 = n2&keep, d2&keep
		m = (m*pow10u64[n1]+d1)*pow10u64[n2] + d2
		i += int(n1 + n2)
		if n2 < 8 {
			return i, m
		}
	}
	if i+8 <= len(b) {
		n, d := leadingDigits(binary.LittleEndian.Uint64(b[i:]))
		m = m*pow10u64[n] + d
		i += int(n)
		if n < 8 {
			return i, m
		}
	}
	for i < len(b) {
		d := b[i] - '0'
		if d > 9 {
			break
		}
		m = m*10 + uint64(d)
		i++
	}
	return i, m
}

// pow10u64 holds 10^n for a step of n digits.
var pow10u64 = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8}

// leadingDigits returns how many of the eight bytes in v, the first in the
// lowest byte, are digits before the first that is not, and their value.
func leadingDigits(v uint64) (n, value uint64) {
	// A byte is a digit when its high nibble is 3 and its low nibble plus 6
	// does not carry past 15; bad has a bit set in each byte that is not.
	// Neither step carries from one byte into the next.
	high := (v & 0xf0f0f0f0f0f0f0f0) ^ 0x3030303030303030
	low := ((v & 0x0f0f0f0f0f0f0f0f) + 0x0606060606060606) & 0xf0f0f0f0f0f0f0f0
	bad := high | low
	n = uint64(bits.TrailingZeros64(bad)) / 8
	// Shifting the digits up puts zeros, not other bytes, in front of them
	// (the lowest byte is the most significant digit) and drops the rest;
	// a shift by 64 leaves nothing, as it should for n == 0.
	return n, eightDigits((v & 0x0f0f0f0f0f0f0f0f) << (8 * (8 - n)))
}

// eightDigits returns the value of eight decimal digits, one per byte, the
// first (most significant) in the lowest byte. Each step joins neighbouring
// lanes, the more significant one times its weight, into lanes twice as
// wide: pairs (at most 99), then quadruples (9999), then the whole. No lane
// overflows into the next, so one multiply does every lane of a step.
func eightDigits(v uint64) uint64 {
	v = (v*10 + (v >> 8)) & 0x00ff00ff00ff00ff
	v = (v*100 + (v >> 16)) & 0x0000ffff0000ffff
	return (v&0xffffffff)*10000 + (v >> 32)
}
