package jsonscan

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestFastFloatMatchesStrconv checks the exact fast path against strconv on
// edge cases and on random decimals of every length and exponent.
func TestFastFloatMatchesStrconv(t *testing.T) {
	toks := []string{"0", "-0", "0.0", "-0.0e5", "1", "-1", "0.1", "16777216", "16777217", "9007199254740992",
		"9007199254740993", "1e22", "1e23", "1e-22", "1e-23", "123456789.123456789", "3.4028235e38", "1e10",
		"1e-10", "1.17549435e-38", "0.000000000000000000000000001", "1234567890123456789", "12345678901234567890",
		"4.9e-324", "1.7976931348623157e308", "0e400", "-0.5E-3", "7E+2"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		mant := strconv.FormatUint(rng.Uint64()>>rng.IntN(64), 10)
		if dot := rng.IntN(len(mant) + 1); dot < len(mant) {
			mant = mant[:dot] + "." + mant[dot:]
			if dot == 0 {
				mant = "0" + mant
			}
		}
		if rng.IntN(2) == 0 {
			mant += "e" + strconv.Itoa(rng.IntN(60)-30)
		}
		if rng.IntN(2) == 0 {
			mant = "-" + mant
		}
		toks = append(toks, mant)
	}
	// Float32 values as clients print them: up to nine significant digits.
	for range 20000 {
		f := math.Float32frombits(rng.Uint32())
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		toks = append(toks, strconv.FormatFloat(float64(f), 'g', -1, 32), strconv.FormatFloat(float64(rng.Float32()), 'g', -1, 32))
	}
	// Halfway points between float32 neighbours, which need strconv.
	toks = append(toks, "1.00000005960464477539062500", "16777217", "0.100000001490116119384765625")
	fast := 0
	for _, tok := range toks {
		var n Number
		if bad := scanNumber([]byte(tok), 0, &n); bad != numberOK || n.End != len(tok) {
			t.Fatalf("scanNumber(%s) = %d, %+v; want the whole token", tok, bad, n)
		}
		if f, ok := n.Float64(); ok {
			want, err := strconv.ParseFloat(tok, 64)
			if err != nil || math.Float64bits(f) != math.Float64bits(want) {
				t.Fatalf("float64(%s) = %v, strconv says %v (%v)", tok, f, want, err)
			}
		}
		if f, ok := n.Float32(); ok {
			fast++
			want, err := strconv.ParseFloat(tok, 32)
			if err != nil || math.Float32bits(f) != math.Float32bits(float32(want)) {
				t.Fatalf("float32(%s) = %v, strconv says %v (%v)", tok, f, want, err)
			}
		}
	}
	if fast < len(toks)/2 {
		t.Errorf("only %d of %d numbers took the fast path", fast, len(toks))
	}
}
