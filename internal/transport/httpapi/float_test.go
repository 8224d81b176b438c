package httpapi

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// floatTokens returns number texts as clients print them and as they could:
// random float32 values in every strconv format and precision, signed
// zeros, subnormals, values near float32's limits, float32 halfway points
// and texts a hair either side of them, and long mantissas with leading
// zeros. Each is valid JSON; some are out of range for FP32 or FP64.
func floatTokens(rng *rand.Rand) []string {
	toks := []string{
		"0", "-0", "0.0", "-0.0", "0e0", "-0E+5", "0.000e-400", "0e99999", "-0.0e-99999",
		"1", "-1", "0.1", "0.5", "1e0", "1E1", "1e+1", "1e-1", "10", "100e-2",
		"16777216", "16777217", "16777218", "16777219", "9007199254740992", "9007199254740993",
		"0.83217114", "5.4231636e-05", "0.000012345", "0.0000000000000000000000001234567890123456789",
		"0.00000000000000000000000012345678901234567891", "1234567890123456789", "12345678901234567890",
		"1234567890.123456789", "1.00000000000000000000000000000000000000001",
		"3.4028235e38", "3.4028235e+38", "-3.4028235e38", "3.40282356e38", "3.4028235677973366e38",
		"3.4028235677973362e38", "3.4028236e38", "1e38", "1e39", "-1e39",
		"1.17549435e-38", "1.1754942e-38", "1e-45", "1.4e-45", "7e-46", "7.1e-46", "2e-46", "1e-50",
		"1.7976931348623157e308", "1.7976931348623159e308", "1e308", "1e309", "4.9e-324", "2.4e-324", "2.5e-324",
		"1e-400", "1e22", "1e23", "1e-22", "1e-23", "1e-64", "1e-65", "1e38", "1e39",
		"100000000000000000000000000000000000000", "0.30000000000000004", "123456789e-50",
	}
	for range 3000 {
		var f float32
		switch rng.IntN(4) {
		case 0:
			f = rng.Float32()
		case 1:
			f = math.Float32frombits(rng.Uint32() & 0x807fffff) // subnormal or zero
		default:
			f = math.Float32frombits(rng.Uint32())
		}
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		d := float64(f)
		toks = append(toks,
			strconv.FormatFloat(d, 'g', -1, 32),
			strconv.FormatFloat(d, 'g', -1, 64),
			strconv.FormatFloat(d, 'e', rng.IntN(22), 64),
			strconv.FormatFloat(d, 'E', rng.IntN(22), 32),
			strconv.FormatFloat(d, 'g', 1+rng.IntN(21), 64),
		)
		if a := math.Abs(d); a > 1e-30 && a < 1e30 {
			toks = append(toks, strconv.FormatFloat(d, 'f', rng.IntN(45), 64))
		}
		// The halfway point to the next float32 away from zero, exactly,
		// and rounded to 8 to 21 digits: a hair either side of it or on it.
		if next := math.Nextafter32(f, float32(math.Copysign(math.Inf(1), d))); !math.IsInf(float64(next), 0) {
			half := (d + float64(next)) / 2
			toks = append(toks, trimExact(strconv.FormatFloat(half, 'e', 800, 64)),
				strconv.FormatFloat(half, 'e', 7+rng.IntN(14), 64))
		}
	}
	// Decimal mantissas of every length around 19 digits, with the point
	// anywhere and exponents in and beyond the exact powers of ten.
	for range 3000 {
		digits := 1 + rng.IntN(24)
		var b strings.Builder
		b.WriteByte(byte('1' + rng.IntN(9)))
		for range digits - 1 {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		m := b.String()
		switch dot := rng.IntN(len(m) + 3); {
		case dot == 0:
			m = "0." + strings.Repeat("0", rng.IntN(30)) + m
		case dot < len(m):
			m = m[:dot] + "." + m[dot:]
		}
		if rng.IntN(2) == 0 {
			m += "e" + strconv.Itoa(rng.IntN(100)-60)
		}
		if rng.IntN(2) == 0 {
			m = "-" + m
		}
		toks = append(toks, m)
	}
	return toks
}

// trimExact drops the trailing zeros of an exact 'e' format mantissa.
func trimExact(s string) string {
	mant, exp, _ := strings.Cut(s, "e")
	return strings.TrimRight(mant, "0") + "e" + exp
}

// separators are the ways elements are separated in the test arrays: the
// compact form the element loop is fastest for and whitespace around the
// comma, which it leaves to the general path.
var separators = []string{",", ",", ",", ", ", " ,", ",\n\t", " \r\n, "}

// floatBody builds an infer request with one input of toks, separated at
// random and, when nest is set, grouped into nested arrays of 1 to 4.
func floatBody(rng *rand.Rand, dt string, toks []string, nest bool) []byte {
	b := []byte(`{"inputs":[{"name":"x","datatype":"` + dt + `","shape":[` + strconv.Itoa(len(toks)) + `],"data":[`)
	for i := 0; i < len(toks); {
		if i > 0 {
			b = append(b, separators[rng.IntN(len(separators))]...)
		}
		n := 1
		if nest {
			n = min(1+rng.IntN(4), len(toks)-i)
			b = append(b, '[')
		}
		for j := range n {
			if j > 0 {
				b = append(b, separators[rng.IntN(len(separators))]...)
			}
			b = append(b, toks[i+j]...)
		}
		if nest {
			b = append(b, ']')
		}
		i += n
	}
	return append(b, "]}]}"...)
}

// TestDecodeFloatsMatchStrconv decodes FP32 and FP64 arrays of floatTokens
// and checks every element bit for bit against strconv.ParseFloat, and that
// each value out of range is an error naming it.
func TestDecodeFloatsMatchStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	toks := floatTokens(rng)
	for _, tt := range []struct {
		dt   string
		bits int
	}{{"FP32", 32}, {"FP64", 64}} {
		t.Run(tt.dt, func(t *testing.T) {
			var ok []string
			var want []byte
			for _, tok := range toks {
				f, err := strconv.ParseFloat(tok, tt.bits)
				if err != nil {
					t.Run("range/"+tok, func(t *testing.T) {
						wantErr(t, floatBody(rng, tt.dt, []string{"1", tok}, false), tok+" is out of range for "+tt.dt)
					})
					continue
				}
				ok = append(ok, tok)
				if tt.bits == 32 {
					want = binary.LittleEndian.AppendUint32(want, math.Float32bits(float32(f)))
				} else {
					want = binary.LittleEndian.AppendUint64(want, math.Float64bits(f))
				}
			}
			for _, nest := range []bool{false, true} {
				req, err := decodeInferRequest(floatBody(rng, tt.dt, ok, nest), -1, "", guard.Limits{})
				if err != nil {
					t.Fatalf("nested %v: %v", nest, err)
				}
				got := req.Inputs[0].Data
				if len(got) != len(want) {
					t.Fatalf("nested %v: %d bytes, want %d", nest, len(got), len(want))
				}
				size := tt.bits / 8
				for i := range ok {
					if g, w := got[i*size:(i+1)*size], want[i*size:(i+1)*size]; string(g) != string(w) {
						t.Errorf("nested %v: %s decoded to %x, strconv says %x", nest, ok[i], g, w)
					}
				}
			}
		})
	}
}

// TestDecodeHalfFloats checks FP16 and BF16 against strconv's float32
// narrowed by the tensor package, and their range errors.
func TestDecodeHalfFloats(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 6))
	toks := floatTokens(rng)
	for _, tt := range []struct {
		dt     string
		narrow func(float32) uint16
		inf    uint16
	}{{"FP16", tensor.Float32ToFP16, 0x7c00}, {"BF16", tensor.Float32ToBF16, 0x7f80}} {
		t.Run(tt.dt, func(t *testing.T) {
			var ok []string
			var want []byte
			overflows := 0
			for _, tok := range toks {
				f, err := strconv.ParseFloat(tok, 32)
				if err != nil {
					continue // TestDecodeFloatsMatchStrconv covers FP32's range
				}
				h := tt.narrow(float32(f))
				if h&0x7fff == tt.inf {
					if overflows < 50 { // a sample: each is a decode
						wantErr(t, floatBody(rng, tt.dt, []string{tok}, false), tok+" is out of range for "+tt.dt)
					}
					overflows++
					continue
				}
				ok = append(ok, tok)
				want = binary.LittleEndian.AppendUint16(want, h)
			}
			req, err := decodeInferRequest(floatBody(rng, tt.dt, ok, false), -1, "", guard.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range ok {
				if g, w := req.Inputs[0].Data[2*i:2*i+2], want[2*i:2*i+2]; string(g) != string(w) {
					t.Errorf("%s decoded to %x, want %x", ok[i], g, w)
				}
			}
		})
	}
}

// TestDecodeMalformedFloats checks that texts outside JSON's number grammar
// are rejected, first in an array or after valid elements, flat or nested,
// with the message the element or the array gives.
func TestDecodeMalformedFloats(t *testing.T) {
	const (
		notNumber = "expected a number"
		malformed = "malformed number"
		afterElem = `"data": malformed JSON at offset`
	)
	tests := []struct {
		tok, want string
	}{
		{"01", afterElem},
		{"-01", afterElem},
		{"00", afterElem},
		{"1.", malformed},
		{"1.e5", malformed},
		{"-.5", malformed},
		{".5", notNumber},
		{"1e", malformed},
		{"1E", malformed},
		{"1e+", malformed},
		{"1e-", malformed},
		{"-", malformed},
		{"--1", malformed},
		{"-e1", malformed},
		{"+1", notNumber},
		{"1.5.5", afterElem},
		{"1e1.5", afterElem},
		{"1e1.5", afterElem},
		{"0x10", afterElem},
		{"1_000", afterElem},
		{"NaN", notNumber},
		{"Infinity", notNumber},
		{"-Infinity", malformed},
		{`"1"`, notNumber},
		{"null", notNumber},
	}
	for _, dt := range []string{"FP32", "FP64", "FP16", "BF16"} {
		for _, tt := range tests {
			for _, at := range []struct {
				name   string
				before string
			}{{"first", ""}, {"after", "0.5,1e-3, -2,"}, {"nested", "[0.5,1],["}} {
				t.Run(dt+"/"+tt.tok+"/"+at.name, func(t *testing.T) {
					data := "[" + at.before + tt.tok + "]"
					if at.name == "nested" {
						data += "]"
					}
					body := `{"inputs":[{"name":"x","datatype":"` + dt + `","shape":[4],"data":` + data + `}]}`
					wantErr(t, []byte(body), tt.want)
				})
			}
		}
	}
}

// TestDecodeFloatElementLimit checks that the fast element loop stops at
// the element limit, with or without a shape to check first.
func TestDecodeFloatElementLimit(t *testing.T) {
	lim := guard.Limits{MaxTensorElements: 3}
	for name, body := range map[string]string{
		"no shape first": `{"inputs":[{"name":"x","datatype":"FP32","data":[1,2,3,4],"shape":[4]}]}`,
		"nested":         `{"inputs":[{"name":"x","datatype":"FP32","data":[[1,2],[3,4]],"shape":[2,2]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeInferRequest([]byte(body), -1, "", lim)
			if !errors.Is(err, transport.ErrLimit) {
				t.Fatalf("error %v, want a limit error", err)
			}
		})
	}
	ok := `{"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[1,2,3]}]}`
	if _, err := decodeInferRequest([]byte(ok), -1, "", lim); err != nil {
		t.Fatalf("3 elements at a limit of 3: %v", err)
	}
}

// wantErr decodes body and checks that it fails as a client error whose
// message contains want.
func wantErr(t *testing.T, body []byte, want string) {
	t.Helper()
	_, err := decodeInferRequest(body, -1, "", guard.Limits{})
	if err == nil {
		t.Fatalf("%s decoded, want an error containing %q", body, want)
	}
	if !errors.Is(err, tensor.ErrInvalid) {
		t.Fatalf("error %v does not wrap tensor.ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
