package jsonscan

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

// FuzzValid checks the Scanner against encoding/json: reading any input as
// one value (Skip, then End) succeeds exactly when json.Valid accepts it,
// but for documents nested deeper than the Scanner allows; and every
// failure is a syntax error.
func FuzzValid(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[0.5,-1e-3]}]}`,
		`[[1,2],[3,4]]`, `"\ud83d\ude00\n"`, `true`, `null`, `-0.0E+5`, `01`, `{"a":}`, `[1,]`, "\"\x01\"", ` `, `[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New(b)
		err := s.Skip()
		if err == nil {
			err = s.End()
		}
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Fatalf("%q: error %v does not wrap ErrSyntax", b, err)
		}
		if err != nil && strings.Contains(err.Error(), "nested deeper") {
			return
		}
		if valid := json.Valid(b); (err == nil) != valid {
			t.Fatalf("%q: Scanner says %v, json.Valid says %v", b, err, valid)
		}
	})
}

// FuzzNumber checks number reading against encoding/json and strconv: a
// token is read whole exactly when it is a valid JSON number, and every
// value the fast conversions give is strconv's, bit for bit.
func FuzzNumber(f *testing.F) {
	for _, s := range []string{"0", "-0.0", "1e22", "1e23", "3.4028235e38", "1.00000005960464477539062500", "12345678901234567890", "1.", "-", "0x1p3", "1e", "4.9e-324"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		var n Number
		whole := ScanNumber([]byte(tok), 0, &n) && n.End == len(tok)
		if valid := json.Valid([]byte(tok)) && strings.TrimSpace(tok) == tok && tok != "" && (tok[0] == '-' || tok[0] >= '0' && tok[0] <= '9'); whole != valid {
			t.Fatalf("%q: read whole %v, a valid JSON number %v", tok, whole, valid)
		}
		if !whole {
			return
		}
		if f, ok := n.Float64(); ok {
			want, err := strconv.ParseFloat(tok, 64)
			if err != nil || math.Float64bits(f) != math.Float64bits(want) {
				t.Fatalf("Float64(%s) = %v, strconv says %v (%v)", tok, f, want, err)
			}
		}
		if f, ok := n.Float32(); ok {
			want, err := strconv.ParseFloat(tok, 32)
			if err != nil || math.Float32bits(f) != math.Float32bits(float32(want)) {
				t.Fatalf("Float32(%s) = %v, strconv says %v (%v)", tok, f, want, err)
			}
		}
	})
}
