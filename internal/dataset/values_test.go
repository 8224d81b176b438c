package dataset

import (
	"math"
	"strconv"
	"testing"
)

// parseFloatCases take each path of parseFloat: numbers the fast path
// converts, numbers it leaves to strconv (too many digits, exponents out of
// its range, forms outside JSON's grammar), and text that is no number.
var parseFloatCases = []string{"0", "-0", "1", "-1.5", "0.1", "3.14159", "1e10", "1E-5", "123456789012345678", "0.30000000000000004",
	"9007199254740993", "1e23", "1e-300", "1e400", "-1e400", "4.9e-324", "+1", ".5", "5.", "01.5", "0x1p-2", "inf", "-Inf", "NaN",
	"1_000", "", "-", "1e", "abc", "1.5x", " 1"}

func TestDatasetParseFloat(t *testing.T) {
	for _, s := range parseFloatCases {
		checkParseFloat(t, s)
	}
}

// FuzzParseFloat: parseFloat is strconv.ParseFloat(s, 64), bit for bit,
// errors included.
func FuzzParseFloat(f *testing.F) {
	for _, s := range parseFloatCases {
		f.Add(s)
	}
	f.Fuzz(checkParseFloat)
}

func checkParseFloat(t *testing.T, s string) {
	got, gotErr := parseFloat(s)
	want, wantErr := strconv.ParseFloat(s, 64)
	if (gotErr != nil) != (wantErr != nil) || math.Float64bits(got) != math.Float64bits(want) {
		t.Errorf("parseFloat(%q) = %v, %v; strconv.ParseFloat gives %v, %v", s, got, gotErr, want, wantErr)
	}
}
