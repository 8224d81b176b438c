package tensor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

func int32Data(vals ...int32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return b
}

func bytesData(elems ...string) []byte {
	var b []byte
	for _, e := range elems {
		b = AppendBytesElement(b, []byte(e))
	}
	return b
}

func TestDataTypes(t *testing.T) {
	for _, d := range AllDataTypes {
		t.Run(d.String(), func(t *testing.T) {
			got, ok := ParseDataType(d.String())
			if !ok || got != d {
				t.Errorf("ParseDataType(%q) = %v, %v", d.String(), got, ok)
			}
			if !d.Valid() {
				t.Error("not valid")
			}
			if (d == Bytes) != (d.Size() == 0) {
				t.Errorf("Size() = %d", d.Size())
			}
		})
	}
	for _, s := range []string{"", "FLOAT32", "int32", "INVALID"} {
		if _, ok := ParseDataType(s); ok {
			t.Errorf("ParseDataType(%q) accepted", s)
		}
	}
	if Invalid.Valid() || DataType(200).Valid() || DataType(200).String() != "INVALID" {
		t.Error("out-of-range data types must be invalid")
	}
}

func TestFP16(t *testing.T) {
	tests := []struct {
		f    float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{65520, 0x7c00}, // rounds up to infinity
		{float32(math.Inf(1)), 0x7c00},
		{5.960464477539063e-08, 0x0001}, // smallest subnormal
		{6.103515625e-05, 0x0400},       // smallest normal
		{0.333333343, 0x3555},
		{1e-9, 0x0000},
	}
	for _, tc := range tests {
		if got := Float32ToFP16(tc.f); got != tc.want {
			t.Errorf("Float32ToFP16(%v) = %#04x, want %#04x", tc.f, got, tc.want)
		}
	}
	// Every finite half survives a round trip through float32.
	for h := range uint32(0x10000) {
		if h&0x7c00 == 0x7c00 && h&0x3ff != 0 {
			continue // NaN payloads need not survive
		}
		if got := Float32ToFP16(FP16ToFloat32(uint16(h))); got != uint16(h) {
			t.Fatalf("round trip of %#04x gave %#04x", h, got)
		}
	}
	if f := FP16ToFloat32(0x7e00); !math.IsNaN(float64(f)) {
		t.Errorf("NaN half decoded as %v", f)
	}
}

func TestBF16(t *testing.T) {
	for h := range uint32(0x10000) {
		if h&0x7f80 == 0x7f80 && h&0x7f != 0 {
			continue
		}
		if got := Float32ToBF16(BF16ToFloat32(uint16(h))); got != uint16(h) {
			t.Fatalf("round trip of %#04x gave %#04x", h, got)
		}
	}
	if got := Float32ToBF16(1.00390625); got != 0x3f80 { // halfway rounds to even
		t.Errorf("Float32ToBF16(1.00390625) = %#04x", got)
	}
	if got := Float32ToBF16(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("NaN became %#04x", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		t    Tensor
		ok   bool
	}{
		{"int32", Tensor{Name: "a", DataType: Int32, Shape: []int64{2, 2}, Data: int32Data(1, 2, 3, 4)}, true},
		{"empty", Tensor{Name: "a", DataType: FP32, Shape: []int64{0, 4}}, true},
		{"scalar", Tensor{Name: "a", DataType: Int64, Shape: nil, Data: make([]byte, 8)}, true},
		{"short", Tensor{Name: "a", DataType: Int32, Shape: []int64{2, 2}, Data: int32Data(1, 2, 3)}, false},
		{"long", Tensor{Name: "a", DataType: Int32, Shape: []int64{1}, Data: int32Data(1, 2)}, false},
		{"negative dim", Tensor{Name: "a", DataType: Int32, Shape: []int64{-1}, Data: nil}, false},
		{"huge", Tensor{Name: "a", DataType: Uint8, Shape: []int64{1 << 30, 1 << 30, 1 << 30}}, false},
		{"invalid dtype", Tensor{Name: "a", Shape: []int64{1}, Data: []byte{0}}, false},
		{"bytes", Tensor{Name: "s", DataType: Bytes, Shape: []int64{3}, Data: bytesData("a", "", "héllo")}, true},
		{"bytes short", Tensor{Name: "s", DataType: Bytes, Shape: []int64{3}, Data: bytesData("a", "")}, false},
		{"bytes trailing", Tensor{Name: "s", DataType: Bytes, Shape: []int64{1}, Data: append(bytesData("a"), 0)}, false},
		{"bytes bad length", Tensor{Name: "s", DataType: Bytes, Shape: []int64{1}, Data: []byte{9, 0, 0, 0, 'a'}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.t.Validate()
			if tc.ok && err != nil {
				t.Errorf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate = %v, want an ErrInvalid error", err)
			}
		})
	}
}

func TestSpecCheck(t *testing.T) {
	spec := Spec{Name: "INPUT0", DataType: Int32, Shape: []int64{-1, 16}}
	tests := []struct {
		name  string
		t     Tensor
		valid bool
	}{
		{"ok", Tensor{Name: "INPUT0", DataType: Int32, Shape: []int64{3, 16}}, true},
		{"dtype", Tensor{Name: "INPUT0", DataType: FP32, Shape: []int64{3, 16}}, false},
		{"rank", Tensor{Name: "INPUT0", DataType: Int32, Shape: []int64{48}}, false},
		{"dim", Tensor{Name: "INPUT0", DataType: Int32, Shape: []int64{3, 15}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := spec.Check(tc.t)
			if (err == nil) != tc.valid {
				t.Errorf("Check = %v", err)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestConcatSplit(t *testing.T) {
	a := Tensor{Name: "x", DataType: Int32, Shape: []int64{1, 2}, Data: int32Data(1, 2)}
	b := Tensor{Name: "x", DataType: Int32, Shape: []int64{2, 2}, Data: int32Data(3, 4, 5, 6)}
	c, err := Concat([]Tensor{a, b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Shape[0] != 3 || c.Shape[1] != 2 || !bytes.Equal(c.Data, int32Data(1, 2, 3, 4, 5, 6)) {
		t.Fatalf("Concat = %+v", c)
	}
	if a.Shape[0] != 1 {
		t.Error("Concat changed its input's shape")
	}
	parts, err := Split(c, []int64{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parts[0].Data, a.Data) || !bytes.Equal(parts[1].Data, b.Data) || parts[1].Shape[0] != 2 {
		t.Fatalf("Split = %+v", parts)
	}
	// Appending to a part must never overwrite its neighbour.
	_ = append(parts[0].Data, 0xff)
	if parts[1].Data[0] != 3 {
		t.Error("parts share capacity")
	}

	s1 := Tensor{Name: "s", DataType: Bytes, Shape: []int64{1, 2}, Data: bytesData("a", "bb")}
	s2 := Tensor{Name: "s", DataType: Bytes, Shape: []int64{1, 2}, Data: bytesData("", "cccc")}
	sc, err := Concat([]Tensor{s1, s2}, make([]byte, 0, 64))
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	sp, err := Split(sc, []int64{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sp[0].Data, s1.Data) || !bytes.Equal(sp[1].Data, s2.Data) {
		t.Errorf("BYTES split = %q, %q", sp[0].Data, sp[1].Data)
	}

	errs := []struct {
		name string
		fn   func() error
	}{
		{"layout", func() error {
			_, err := Concat([]Tensor{a, {Name: "x", DataType: Int32, Shape: []int64{1, 3}, Data: int32Data(1, 2, 3)}}, nil)
			return err
		}},
		{"dtype", func() error {
			_, err := Concat([]Tensor{a, {Name: "x", DataType: Uint32, Shape: []int64{1, 2}, Data: int32Data(1, 2)}}, nil)
			return err
		}},
		{"rows sum", func() error { _, err := Split(c, []int64{1, 1}); return err }},
		{"negative rows", func() error { _, err := Split(c, []int64{4, -1}); return err }},
		{"scalar", func() error {
			_, err := Split(Tensor{Name: "x", DataType: Int32, Data: int32Data(1)}, []int64{1})
			return err
		}},
		{"nothing", func() error { _, err := Concat(nil, nil); return err }},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fn() == nil {
				t.Error("no error")
			}
		})
	}
}

func TestBytesElements(t *testing.T) {
	data := bytesData("x", "", "yz")
	els, err := BytesElements(data, 3)
	if err != nil {
		t.Fatal(err)
	}
	if string(els[0]) != "x" || len(els[1]) != 0 || string(els[2]) != "yz" {
		t.Errorf("elements %q", els)
	}
	for _, n := range []int64{2, 4, -1, 1 << 40} {
		if _, err := BytesElements(data, n); !errors.Is(err, ErrInvalid) {
			t.Errorf("BytesElements(n=%d) = %v, want ErrInvalid", n, err)
		}
	}
}

// FuzzValidateSplit checks that Validate never panics, and that whatever it
// accepts splits into rows and concatenates back to the same bytes.
func FuzzValidateSplit(f *testing.F) {
	f.Add(uint8(Int32), int64(2), int64(2), int32Data(1, 2, 3, 4))
	f.Add(uint8(Bytes), int64(2), int64(1), bytesData("ab", ""))
	f.Add(uint8(FP16), int64(1), int64(3), []byte{1, 2, 3, 4, 5, 6})
	f.Add(uint8(Bytes), int64(1), int64(1), []byte{255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, dt uint8, rows, cols int64, data []byte) {
		in := Tensor{Name: "f", DataType: DataType(dt), Shape: []int64{rows, cols}, Data: data}
		if in.Validate() != nil {
			return
		}
		if rows > 64 {
			return
		}
		counts := make([]int64, rows)
		for i := range counts {
			counts[i] = 1
		}
		parts, err := Split(in, counts)
		if err != nil {
			t.Fatalf("valid tensor failed to split: %v", err)
		}
		for _, p := range parts {
			if err := p.Validate(); err != nil {
				t.Fatalf("split part invalid: %v", err)
			}
		}
		if rows == 0 {
			return
		}
		back, err := Concat(parts, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Data, data) || back.Shape[0] != rows {
			t.Fatalf("split+concat changed the tensor")
		}
	})
}
