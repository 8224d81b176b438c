package onnxgen

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file reads model bytes back into plain structs, independently of
// the encoder, so tests check what a reader of the ONNX format would see.

type decodedModel struct {
	irVersion    int64
	producer     string
	opsetDomain  []string
	opsetVersion []int64
	graph        decodedGraph
}

type decodedGraph struct {
	name         string
	nodes        []decodedNode
	initializers []decodedTensor
	inputs       []decodedValue
	outputs      []decodedValue
}

type decodedNode struct {
	name    string
	opType  string
	inputs  []string
	outputs []string
	attrs   []decodedAttr
}

type decodedAttr struct {
	name   string
	kind   int64
	i      int64
	f      float32
	s      string
	ints   []int64
	floats []float32
}

type decodedTensor struct {
	name     string
	dataType int64
	dims     []int64
	raw      []byte
}

type decodedValue struct {
	name     string
	elemType int64
	// dims holds each dimension as written: its size in decimal, or its
	// symbolic name.
	dims []string
}

// wireFields is one message's fields by number, in the order they appear.
type wireFields struct {
	varints map[protowire.Number][]uint64
	bytes   map[protowire.Number][][]byte
	fixed32 map[protowire.Number][]uint32
}

func parseFields(b []byte) (wireFields, error) {
	f := wireFields{
		varints: map[protowire.Number][]uint64{},
		bytes:   map[protowire.Number][][]byte{},
		fixed32: map[protowire.Number][]uint32{},
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return f, fmt.Errorf("tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return f, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			f.varints[num] = append(f.varints[num], v)
			b = b[n:]
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return f, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			f.bytes[num] = append(f.bytes[num], v)
			b = b[n:]
		case protowire.Fixed32Type:
			v, n := protowire.ConsumeFixed32(b)
			if n < 0 {
				return f, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			f.fixed32[num] = append(f.fixed32[num], v)
			b = b[n:]
		default:
			return f, fmt.Errorf("field %d: unexpected wire type %d", num, typ)
		}
	}
	return f, nil
}

func (f wireFields) str(num protowire.Number) string {
	v := f.bytes[num]
	if len(v) == 0 {
		return ""
	}
	return string(v[len(v)-1])
}

func (f wireFields) strs(num protowire.Number) []string {
	var out []string
	for _, v := range f.bytes[num] {
		out = append(out, string(v))
	}
	return out
}

func (f wireFields) int(num protowire.Number) int64 {
	v := f.varints[num]
	if len(v) == 0 {
		return 0
	}
	return int64(v[len(v)-1])
}

func (f wireFields) ints(num protowire.Number) []int64 {
	var out []int64
	for _, v := range f.varints[num] {
		out = append(out, int64(v))
	}
	return out
}

// decodeModel parses a ModelProto with the field numbers of onnx.proto.
func decodeModel(b []byte) (decodedModel, error) {
	var m decodedModel
	f, err := parseFields(b)
	if err != nil {
		return m, fmt.Errorf("model: %w", err)
	}
	m.irVersion = f.int(1)
	m.producer = f.str(2)
	for _, ob := range f.bytes[8] {
		of, err := parseFields(ob)
		if err != nil {
			return m, fmt.Errorf("opset_import: %w", err)
		}
		m.opsetDomain = append(m.opsetDomain, of.str(1))
		m.opsetVersion = append(m.opsetVersion, of.int(2))
	}
	if len(f.bytes[7]) != 1 {
		return m, fmt.Errorf("model has %d graphs, want 1", len(f.bytes[7]))
	}
	m.graph, err = decodeGraph(f.bytes[7][0])
	return m, err
}

func decodeGraph(b []byte) (decodedGraph, error) {
	var g decodedGraph
	f, err := parseFields(b)
	if err != nil {
		return g, fmt.Errorf("graph: %w", err)
	}
	g.name = f.str(2)
	for _, nb := range f.bytes[1] {
		n, err := decodeNode(nb)
		if err != nil {
			return g, err
		}
		g.nodes = append(g.nodes, n)
	}
	for _, tb := range f.bytes[5] {
		tf, err := parseFields(tb)
		if err != nil {
			return g, fmt.Errorf("initializer: %w", err)
		}
		var raw []byte
		if r := tf.bytes[9]; len(r) > 0 {
			raw = r[0]
		}
		g.initializers = append(g.initializers, decodedTensor{
			name: tf.str(8), dataType: tf.int(2), dims: tf.ints(1), raw: raw,
		})
	}
	for num, dst := range map[protowire.Number]*[]decodedValue{11: &g.inputs, 12: &g.outputs} {
		for _, vb := range f.bytes[num] {
			v, err := decodeValue(vb)
			if err != nil {
				return g, err
			}
			*dst = append(*dst, v)
		}
	}
	return g, nil
}

func decodeNode(b []byte) (decodedNode, error) {
	var n decodedNode
	f, err := parseFields(b)
	if err != nil {
		return n, fmt.Errorf("node: %w", err)
	}
	n.name, n.opType = f.str(3), f.str(4)
	n.inputs, n.outputs = f.strs(1), f.strs(2)
	for _, ab := range f.bytes[5] {
		af, err := parseFields(ab)
		if err != nil {
			return n, fmt.Errorf("node %s attribute: %w", n.name, err)
		}
		a := decodedAttr{name: af.str(1), kind: af.int(20), i: af.int(3), s: af.str(4), ints: af.ints(8)}
		if v := af.fixed32[2]; len(v) > 0 {
			a.f = math.Float32frombits(v[0])
		}
		for _, v := range af.fixed32[7] {
			a.floats = append(a.floats, math.Float32frombits(v))
		}
		n.attrs = append(n.attrs, a)
	}
	return n, nil
}

func decodeValue(b []byte) (decodedValue, error) {
	var v decodedValue
	f, err := parseFields(b)
	if err != nil {
		return v, fmt.Errorf("value_info: %w", err)
	}
	v.name = f.str(1)
	tf, err := parseFields(f.bytes[2][0])
	if err != nil {
		return v, fmt.Errorf("value %s type: %w", v.name, err)
	}
	if len(tf.bytes[1]) != 1 {
		return v, fmt.Errorf("value %s is not a tensor", v.name)
	}
	ttf, err := parseFields(tf.bytes[1][0])
	if err != nil {
		return v, fmt.Errorf("value %s tensor type: %w", v.name, err)
	}
	v.elemType = ttf.int(1)
	if len(ttf.bytes[2]) != 1 {
		return v, fmt.Errorf("value %s has no shape", v.name)
	}
	sf, err := parseFields(ttf.bytes[2][0])
	if err != nil {
		return v, fmt.Errorf("value %s shape: %w", v.name, err)
	}
	v.dims = []string{}
	for _, db := range sf.bytes[1] {
		df, err := parseFields(db)
		if err != nil {
			return v, fmt.Errorf("value %s dim: %w", v.name, err)
		}
		switch {
		case len(df.varints[1]) == 1 && len(df.bytes[2]) == 0:
			v.dims = append(v.dims, strconv.FormatInt(df.int(1), 10))
		case len(df.bytes[2]) == 1 && len(df.varints[1]) == 0:
			v.dims = append(v.dims, df.str(2))
		default:
			return v, fmt.Errorf("value %s: dimension sets neither or both of dim_value and dim_param", v.name)
		}
	}
	return v, nil
}

func decodeFloat32s(raw []byte) []float32 {
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out
}
