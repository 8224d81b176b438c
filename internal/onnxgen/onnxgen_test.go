package onnxgen

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
)

// maxModelSize keeps bundled models small enough to commit.
const maxModelSize = 1 << 20

type wantValue struct {
	name     string
	elemType int32
	dims     []string
}

func mustDecode(t *testing.T, b []byte) decodedModel {
	t.Helper()
	m, err := decodeModel(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return m
}

func checkValues(t *testing.T, kind string, got []decodedValue, want []wantValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", kind, len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.name != w.name || g.elemType != int64(w.elemType) || !slices.Equal(g.dims, w.dims) {
			t.Errorf("%s %d: got %s type %d dims %v, want %s type %d dims %v",
				kind, i, g.name, g.elemType, g.dims, w.name, w.elemType, w.dims)
		}
	}
}

func opTypes(g decodedGraph) []string {
	var out []string
	for _, n := range g.nodes {
		out = append(out, n.opType)
	}
	return out
}

func TestReadyModels(t *testing.T) {
	simpleIO := func(et int32) ([]wantValue, []wantValue) {
		d := []string{"batch", "16"}
		return []wantValue{{"INPUT0", et, d}, {"INPUT1", et, d}},
			[]wantValue{{"OUTPUT0", et, d}, {"OUTPUT1", et, d}}
	}
	simpleIn, simpleOut := simpleIO(Int32)
	stringIn, stringOut := simpleIO(String)
	tests := []struct {
		name    string
		model   []byte
		inputs  []wantValue
		outputs []wantValue
		ops     []string
	}{
		{"simple", Simple(), simpleIn, simpleOut, []string{"Add", "Sub"}},
		{"simple_string", SimpleString(), stringIn, stringOut,
			[]string{"Cast", "Cast", "Add", "Sub", "Cast", "Cast"}},
		{"classifier", Classifier(1),
			[]wantValue{{"INPUT", Float, []string{"batch", "64"}}},
			[]wantValue{{"OUTPUT", Float, []string{"batch", "10"}}},
			[]string{"Gemm", "Relu", "Gemm", "Softmax"}},
		{"identity", Identity(Uint16, []int64{Dynamic, 2, Dynamic}),
			[]wantValue{{"INPUT", Uint16, []string{"batch", "2", "d2"}}},
			[]wantValue{{"OUTPUT", Uint16, []string{"batch", "2", "d2"}}},
			[]string{"Identity"}},
		{"add_const", AddConst(2),
			[]wantValue{{"INPUT", Float, []string{"batch", "4"}}},
			[]wantValue{{"OUTPUT", Float, []string{"batch", "4"}}},
			[]string{"Add"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.model) > maxModelSize {
				t.Errorf("model is %d bytes, want at most %d", len(tc.model), maxModelSize)
			}
			m := mustDecode(t, tc.model)
			if m.irVersion != IRVersion {
				t.Errorf("ir_version = %d, want %d", m.irVersion, IRVersion)
			}
			if !slices.Equal(m.opsetDomain, []string{""}) || !slices.Equal(m.opsetVersion, []int64{DefaultOpset}) {
				t.Errorf("opset_import = %q %v, want the default domain at %d", m.opsetDomain, m.opsetVersion, DefaultOpset)
			}
			if m.producer != producerName {
				t.Errorf("producer_name = %q, want %q", m.producer, producerName)
			}
			if m.graph.name != tc.name {
				t.Errorf("graph name = %q, want %q", m.graph.name, tc.name)
			}
			checkValues(t, "input", m.graph.inputs, tc.inputs)
			checkValues(t, "output", m.graph.outputs, tc.outputs)
			if got := opTypes(m.graph); !slices.Equal(got, tc.ops) {
				t.Errorf("op types = %v, want %v", got, tc.ops)
			}
			checkTopological(t, m.graph)
		})
	}
}

// checkTopological asserts that every node input is defined before the
// node and every graph output is produced, so ONNX Runtime will accept the
// graph as written.
func checkTopological(t *testing.T, g decodedGraph) {
	t.Helper()
	defined := map[string]bool{}
	for _, v := range g.inputs {
		defined[v.name] = true
	}
	for _, i := range g.initializers {
		defined[i.name] = true
	}
	names := map[string]bool{}
	for _, n := range g.nodes {
		if names[n.name] {
			t.Errorf("node name %q is used twice", n.name)
		}
		names[n.name] = true
		for _, in := range n.inputs {
			if !defined[in] {
				t.Errorf("node %s reads %q before it is defined", n.name, in)
			}
		}
		for _, out := range n.outputs {
			if defined[out] {
				t.Errorf("node %s redefines %q", n.name, out)
			}
			defined[out] = true
		}
	}
	for _, v := range g.outputs {
		if !defined[v.name] {
			t.Errorf("graph output %q is never produced", v.name)
		}
	}
}

func TestSimpleStringCasts(t *testing.T) {
	m := mustDecode(t, SimpleString())
	var got []int64
	for _, n := range m.graph.nodes {
		if n.opType != "Cast" {
			continue
		}
		if len(n.attrs) != 1 || n.attrs[0].name != "to" || n.attrs[0].kind != int64(attrKindInt) {
			t.Fatalf("Cast %s attributes = %+v, want one INT attribute \"to\"", n.name, n.attrs)
		}
		got = append(got, n.attrs[0].i)
	}
	want := []int64{int64(Int32), int64(Int32), int64(String), int64(String)}
	if !slices.Equal(got, want) {
		t.Errorf("Cast targets = %v, want %v", got, want)
	}
}

func TestClassifier(t *testing.T) {
	one, two := Classifier(1), Classifier(2)
	if !bytes.Equal(one, Classifier(1)) {
		t.Error("Classifier(1) differs between calls")
	}
	if bytes.Equal(one, two) {
		t.Error("Classifier(1) and Classifier(2) are identical")
	}
	m1, m2 := mustDecode(t, one), mustDecode(t, two)

	wantInits := []struct {
		name  string
		dims  []int64
		bound float64
	}{
		{"fc1_w", []int64{ClassifierFeatures, ClassifierHidden}, math.Sqrt(6.0 / (ClassifierFeatures + ClassifierHidden))},
		{"fc1_b", []int64{ClassifierHidden}, 0.1},
		{"fc2_w", []int64{ClassifierHidden, ClassifierClasses}, math.Sqrt(6.0 / (ClassifierHidden + ClassifierClasses))},
		{"fc2_b", []int64{ClassifierClasses}, 0.1},
	}
	if len(m1.graph.initializers) != len(wantInits) {
		t.Fatalf("got %d initializers, want %d", len(m1.graph.initializers), len(wantInits))
	}
	for i, w := range wantInits {
		t.Run(w.name, func(t *testing.T) {
			got := m1.graph.initializers[i]
			if got.name != w.name || got.dataType != int64(Float) || !slices.Equal(got.dims, w.dims) {
				t.Fatalf("initializer %d = %s type %d dims %v, want %s FLOAT %v", i, got.name, got.dataType, got.dims, w.name, w.dims)
			}
			n := 1
			for _, d := range w.dims {
				n *= int(d)
			}
			if len(got.raw) != 4*n {
				t.Fatalf("raw_data is %d bytes, want %d", len(got.raw), 4*n)
			}
			vals := decodeFloat32s(got.raw)
			var nonZero int
			for _, v := range vals {
				if math.IsNaN(float64(v)) || math.Abs(float64(v)) > w.bound {
					t.Fatalf("weight %v outside [-%v, %v]", v, w.bound, w.bound)
				}
				if v != 0 {
					nonZero++
				}
			}
			if nonZero < n/2 {
				t.Errorf("only %d of %d weights are non-zero", nonZero, n)
			}
			if bytes.Equal(got.raw, m2.graph.initializers[i].raw) {
				t.Error("seed 1 and seed 2 have the same values")
			}
		})
	}

	softmax := m1.graph.nodes[len(m1.graph.nodes)-1]
	if len(softmax.attrs) != 1 || softmax.attrs[0].name != "axis" || softmax.attrs[0].i != -1 {
		t.Errorf("Softmax attributes = %+v, want axis = -1", softmax.attrs)
	}
}

func TestIdentityEveryType(t *testing.T) {
	for _, et := range ElemTypes() {
		t.Run(ElemTypeName(et), func(t *testing.T) {
			m := mustDecode(t, Identity(et, []int64{Dynamic, 3}))
			want := []string{"batch", "3"}
			checkValues(t, "input", m.graph.inputs, []wantValue{{"INPUT", et, want}})
			checkValues(t, "output", m.graph.outputs, []wantValue{{"OUTPUT", et, want}})
		})
	}
	t.Run("scalar", func(t *testing.T) {
		m := mustDecode(t, Identity(Bool, nil))
		checkValues(t, "input", m.graph.inputs, []wantValue{{"INPUT", Bool, []string{}}})
	})
}

func TestAddConst(t *testing.T) {
	for _, delta := range []float32{0.5, -3, 1e6} {
		m := mustDecode(t, AddConst(delta))
		inits := m.graph.initializers
		if len(inits) != 1 || inits[0].name != "DELTA" || len(inits[0].dims) != 0 || inits[0].dataType != int64(Float) {
			t.Fatalf("AddConst(%v) initializers = %+v, want one FLOAT scalar DELTA", delta, inits)
		}
		if got := decodeFloat32s(inits[0].raw); !slices.Equal(got, []float32{delta}) {
			t.Errorf("AddConst(%v) stores %v", delta, got)
		}
	}
	if bytes.Equal(AddConst(1), AddConst(2)) {
		t.Error("AddConst(1) and AddConst(2) are identical")
	}
}

func TestAttributes(t *testing.T) {
	g := NewGraph("attrs")
	g.AddInput("x", Float, []int64{2})
	g.AddOutput("y", Float, []int64{2})
	g.AddNode("Custom", []string{"x"}, []string{"y"},
		AttrInt("i", -5),
		AttrFloat("f", 1.25),
		AttrString("s", "text"),
		AttrInts("is", 3, -1, 1<<40),
		AttrFloats("fs", 0.5, -2),
	)
	m := mustDecode(t, g.Model(13))
	if !slices.Equal(m.opsetVersion, []int64{13}) {
		t.Errorf("opset = %v, want [13]", m.opsetVersion)
	}
	attrs := m.graph.nodes[0].attrs
	want := []decodedAttr{
		{name: "i", kind: int64(attrKindInt), i: -5},
		{name: "f", kind: int64(attrKindFloat), f: 1.25},
		{name: "s", kind: int64(attrKindString), s: "text"},
		{name: "is", kind: int64(attrKindInts), ints: []int64{3, -1, 1 << 40}},
		{name: "fs", kind: int64(attrKindFloats), floats: []float32{0.5, -2}},
	}
	if len(attrs) != len(want) {
		t.Fatalf("got %d attributes, want %d", len(attrs), len(want))
	}
	for i, w := range want {
		t.Run(w.name, func(t *testing.T) {
			a := attrs[i]
			if a.name != w.name || a.kind != w.kind || a.i != w.i || a.f != w.f || a.s != w.s ||
				!slices.Equal(a.ints, w.ints) || !slices.Equal(a.floats, w.floats) {
				t.Errorf("got %+v, want %+v", a, w)
			}
		})
	}
}

func TestAddInitializerRaw(t *testing.T) {
	raw := []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}
	g := NewGraph("init")
	g.AddInitializer("k", Int64, []int64{2, 1}, raw)
	raw[0] = 9
	m := mustDecode(t, g.Model(DefaultOpset))
	got := m.graph.initializers[0]
	if got.name != "k" || got.dataType != int64(Int64) || !slices.Equal(got.dims, []int64{2, 1}) {
		t.Errorf("initializer = %s type %d dims %v, want k INT64 [2 1]", got.name, got.dataType, got.dims)
	}
	if got.raw[0] != 1 || len(got.raw) != 16 {
		t.Errorf("raw_data = %v: the caller's later change leaked in or bytes were lost", got.raw)
	}
}

func TestBuilderRefusesBadArguments(t *testing.T) {
	tests := []struct {
		name string
		add  func(g *Graph)
		want string
	}{
		{"string initializer", func(g *Graph) { g.AddInitializer("s", String, []int64{1}, []byte{0}) }, "no fixed width"},
		{"short raw data", func(g *Graph) { g.AddInitializer("w", Float, []int64{2}, make([]byte, 7)) }, "7 bytes for 2 elements"},
		{"dynamic initializer", func(g *Graph) { g.AddInitializer("w", Float, []int64{Dynamic}, nil) }, "not fixed"},
		{"unknown input type", func(g *Graph) { g.AddInput("x", 14, []int64{1}) }, "unknown element type 14"},
		{"unknown output type", func(g *Graph) { g.AddOutput("y", 0, []int64{1}) }, "unknown element type 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if !strings.Contains(msg, tc.want) {
					t.Errorf("panic = %v, want one mentioning %q", r, tc.want)
				}
			}()
			tc.add(NewGraph("bad"))
		})
	}
}

func TestElemTypes(t *testing.T) {
	want := map[int32]struct {
		name string
		size int
	}{
		Float: {"FP32", 4}, Uint8: {"UINT8", 1}, Int8: {"INT8", 1}, Uint16: {"UINT16", 2},
		Int16: {"INT16", 2}, Int32: {"INT32", 4}, Int64: {"INT64", 8}, String: {"BYTES", 0},
		Bool: {"BOOL", 1}, Float16: {"FP16", 2}, Double: {"FP64", 8}, Uint32: {"UINT32", 4},
		Uint64: {"UINT64", 8}, Bfloat16: {"BF16", 2},
	}
	got := ElemTypes()
	if len(got) != len(want) || !slices.IsSorted(got) {
		t.Fatalf("ElemTypes() = %v, want the %d types in numeric order", got, len(want))
	}
	for _, et := range got {
		w, ok := want[et]
		if !ok {
			t.Errorf("ElemTypes() lists unexpected type %d", et)
			continue
		}
		if ElemTypeName(et) != w.name || ElemSize(et) != w.size {
			t.Errorf("type %d: name %q size %d, want %q %d", et, ElemTypeName(et), ElemSize(et), w.name, w.size)
		}
	}
	got[0] = 99
	if ElemTypes()[0] != Float {
		t.Error("changing the returned slice changed the package's list")
	}
	if ElemTypeName(99) != "" || ElemSize(99) != 0 {
		t.Error("an unknown type has a name or a size")
	}
}
