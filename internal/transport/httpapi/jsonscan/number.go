package jsonscan

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
)

// Number reads a number token as JSON's grammar defines it (no leading
// zeros, no leading '+', no hex, no NaN) and reports whether it has a
// fraction or an exponent.
func (s *Scanner) Number() (tok []byte, frac bool, err error) {
	var n Number
	if bad := scanNumber(s.buf, s.pos, &n); bad != numberOK {
		return nil, false, s.numberError(n.End, bad)
	}
	tok = s.buf[s.pos:n.End]
	s.pos = n.End
	return tok, n.Frac, nil
}

// numberError turns scanNumber's verdict into the Scanner's error, with the
// offset where the token went wrong.
func (s *Scanner) numberError(at int, bad numberSyntax) error {
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

// Number is one number token as ScanNumber reads it: the token ends at End,
// and its value is mant × 10^exp, negative when neg. Float32 and Float64
// convert it.
type Number struct {
	// End is the index just past the token, or where it went wrong.
	End  int
	mant uint64
	exp  int
	neg  bool
	// Frac says the token has a fraction or an exponent.
	Frac bool
	// long says the token has more than 19 significant digits, which mant
	// may not hold: its value is then meaningless.
	long bool
}

// ScanNumber reads the number token that starts at b[i] into n and
// reports whether it is one, as JSON's grammar defines numbers. It is the
// scanner's number reading for callers that read a run of numbers from Buf
// themselves; n.End is where the next token may start.
func ScanNumber(b []byte, i int, n *Number) bool {
	return scanNumber(b, i, n) == numberOK
}

// scanNumber reads the number token that starts at b[i] into n and, in the
// same pass, its decimal mantissa and exponent, so float data is read once.
// The exponent saturates far beyond any float's range, so a hostile one
// cannot overflow it.
//
// n is filled through a pointer rather than returned: a returned struct is
// spilled with narrow stores and copied with wide loads, which the CPU
// cannot forward, and that stall cost more than the parsing.
func scanNumber(b []byte, i int, n *Number) numberSyntax {
	*n = Number{}
	start := i
	if i < len(b) && b[i] == '-' {
		n.neg = true
		i++
	}
	if i >= len(b) || b[i]-'0' > 9 {
		n.End = i
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
			n.End = i
			return numberNoFraction
		}
		digits += i - frac
		n.exp = frac - i
		n.Frac = true
	}
	if digits > 19 {
		n.long = significant(b, first, digits) > 19
	}
	if i < len(b) && b[i]|0x20 == 'e' { // 'e' or 'E'
		i++
		n.Frac = true
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
			n.End = i
			return numberNoExponent
		}
		if eneg {
			e = -e
		}
		n.exp += e
	}
	n.End = i
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

// ParseMagnitude parses the digits of a JSON integer token (an optional
// leading '-' is ignored) into a uint64, reporting overflow.
func ParseMagnitude(tok []byte) (uint64, bool) {
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

// pow10f64 holds the powers of ten that are exact float64 values.
var pow10f64 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// Float64 converts n exactly when the mantissa and the power of ten are
// both exact float64 values: one correctly rounded multiply or divide then
// gives the correctly rounded result. Most numbers clients send qualify;
// for the others ok is false and the caller asks strconv.
func (n *Number) Float64() (f float64, ok bool) {
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

// Float32 converts n to the nearest float32 through one float64 multiply,
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
func (n *Number) Float32() (float32, bool) {
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
