package onnxgen

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// IRVersion is the ONNX IR version every model written by this package
// declares. Version 8 is understood by every ONNX Runtime release this
// project supports.
const IRVersion = 8

// DefaultOpset is the version of the default ("ai.onnx") operator set the
// ready-made models import.
const DefaultOpset = 17

// Dynamic marks a dimension whose size is chosen at run time. Model writes
// it as a named dimension (dim_param) instead of a fixed size.
const Dynamic = -1

// producerName is written into every model so a model file can be traced
// back to its generator.
const producerName = "onnxserve-onnxgen"

// Field numbers of the ONNX protobuf messages this package writes.
const (
	modelIRVersion     protowire.Number = 1
	modelProducerName  protowire.Number = 2
	modelGraph         protowire.Number = 7
	modelOpsetImport   protowire.Number = 8
	opsetDomain        protowire.Number = 1
	opsetVersion       protowire.Number = 2
	graphNode          protowire.Number = 1
	graphName          protowire.Number = 2
	graphInitializer   protowire.Number = 5
	graphInput         protowire.Number = 11
	graphOutput        protowire.Number = 12
	nodeInput          protowire.Number = 1
	nodeOutput         protowire.Number = 2
	nodeName           protowire.Number = 3
	nodeOpType         protowire.Number = 4
	nodeAttribute      protowire.Number = 5
	attrName           protowire.Number = 1
	attrF              protowire.Number = 2
	attrI              protowire.Number = 3
	attrS              protowire.Number = 4
	attrFloats         protowire.Number = 7
	attrInts           protowire.Number = 8
	attrType           protowire.Number = 20
	valueInfoName      protowire.Number = 1
	valueInfoType      protowire.Number = 2
	typeTensorType     protowire.Number = 1
	tensorTypeElemType protowire.Number = 1
	tensorTypeShape    protowire.Number = 2
	shapeDim           protowire.Number = 1
	dimValue           protowire.Number = 1
	dimParam           protowire.Number = 2
	tensorDims         protowire.Number = 1
	tensorDataType     protowire.Number = 2
	tensorName         protowire.Number = 8
	tensorRawData      protowire.Number = 9
)

// attrKind is AttributeProto.AttributeType.
type attrKind int32

const (
	attrKindFloat  attrKind = 1
	attrKindInt    attrKind = 2
	attrKindString attrKind = 3
	attrKindFloats attrKind = 6
	attrKindInts   attrKind = 7
)

// Attr is one node attribute. Build it with AttrInt, AttrFloat, AttrString,
// AttrInts or AttrFloats. An Attr is immutable and safe for concurrent use.
type Attr struct {
	name   string
	kind   attrKind
	i      int64
	f      float32
	s      string
	ints   []int64
	floats []float32
}

// AttrInt returns an INT attribute, such as Softmax's axis or Cast's to.
func AttrInt(name string, v int64) Attr {
	return Attr{name: name, kind: attrKindInt, i: v}
}

// AttrFloat returns a FLOAT attribute, such as Gemm's alpha.
func AttrFloat(name string, v float32) Attr {
	return Attr{name: name, kind: attrKindFloat, f: v}
}

// AttrString returns a STRING attribute.
func AttrString(name, v string) Attr {
	return Attr{name: name, kind: attrKindString, s: v}
}

// AttrInts returns an INTS attribute, such as Transpose's perm.
func AttrInts(name string, v ...int64) Attr {
	return Attr{name: name, kind: attrKindInts, ints: append([]int64(nil), v...)}
}

// AttrFloats returns a FLOATS attribute.
func AttrFloats(name string, v ...float32) Attr {
	return Attr{name: name, kind: attrKindFloats, floats: append([]float32(nil), v...)}
}

type valueInfo struct {
	name     string
	elemType int32
	dims     []int64
}

type node struct {
	opType  string
	inputs  []string
	outputs []string
	attrs   []Attr
}

type initializer struct {
	name     string
	elemType int32
	dims     []int64
	raw      []byte
}

// Graph describes one ONNX graph: its inputs, outputs, nodes and constant
// initializers, in the order they are added. The zero value is not usable;
// create one with NewGraph. A Graph is not safe for concurrent use.
//
// The Add methods panic on arguments that could only come from a bug in the
// caller (an unknown element type, initializer bytes that do not match the
// shape), because every graph this package builds is fixed at compile time.
type Graph struct {
	name         string
	inputs       []valueInfo
	outputs      []valueInfo
	nodes        []node
	initializers []initializer
}

// NewGraph returns an empty graph with the given name.
func NewGraph(name string) *Graph {
	return &Graph{name: name}
}

// AddInput declares a graph input. A dimension equal to Dynamic is written
// as a named dimension: "batch" for the first one, "d<i>" for dimension i
// otherwise, so inputs and outputs that share a position share a name.
func (g *Graph) AddInput(name string, elemType int32, dims []int64) {
	g.inputs = append(g.inputs, newValueInfo(name, elemType, dims))
}

// AddOutput declares a graph output, with dimensions written as AddInput does.
func (g *Graph) AddOutput(name string, elemType int32, dims []int64) {
	g.outputs = append(g.outputs, newValueInfo(name, elemType, dims))
}

// AddNode appends a node of the default operator set. Nodes must be added in
// topological order: a node's inputs are graph inputs, initializers or
// outputs of nodes added before it.
func (g *Graph) AddNode(opType string, inputs, outputs []string, attrs ...Attr) {
	g.nodes = append(g.nodes, node{
		opType:  opType,
		inputs:  append([]string(nil), inputs...),
		outputs: append([]string(nil), outputs...),
		attrs:   append([]Attr(nil), attrs...),
	})
}

// AddInitializer adds a constant tensor whose elements are raw, fixed-width
// and little-endian, in row-major order. STRING tensors cannot be stored
// this way and are refused.
func (g *Graph) AddInitializer(name string, elemType int32, dims []int64, raw []byte) {
	size := ElemSize(elemType)
	if size == 0 {
		panic(fmt.Sprintf("onnxgen: initializer %q: element type %s has no fixed width", name, ElemTypeName(elemType)))
	}
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			panic(fmt.Sprintf("onnxgen: initializer %q: dimension %d is not fixed", name, d))
		}
		n *= d
	}
	if int64(len(raw)) != n*int64(size) {
		panic(fmt.Sprintf("onnxgen: initializer %q: %d bytes for %d elements of %d bytes", name, len(raw), n, size))
	}
	g.initializers = append(g.initializers, initializer{
		name:     name,
		elemType: elemType,
		dims:     append([]int64(nil), dims...),
		raw:      append([]byte(nil), raw...),
	})
}

// Model encodes the graph as a ModelProto importing version opset of the
// default operator set. The same graph always encodes to the same bytes.
func (g *Graph) Model(opset int64) []byte {
	var b []byte
	b = appendVarintField(b, modelIRVersion, IRVersion)
	b = appendStringField(b, modelProducerName, producerName)
	b = appendBytesField(b, modelGraph, g.encode())
	var op []byte
	op = appendStringField(op, opsetDomain, "")
	op = appendVarintField(op, opsetVersion, uint64(opset))
	b = appendBytesField(b, modelOpsetImport, op)
	return b
}

func newValueInfo(name string, elemType int32, dims []int64) valueInfo {
	if ElemTypeName(elemType) == "" {
		panic(fmt.Sprintf("onnxgen: value %q: unknown element type %d", name, elemType))
	}
	return valueInfo{name: name, elemType: elemType, dims: append([]int64(nil), dims...)}
}

func (g *Graph) encode() []byte {
	var b []byte
	for i, n := range g.nodes {
		b = appendBytesField(b, graphNode, n.encode(fmt.Sprintf("%s_%d", n.opType, i)))
	}
	b = appendStringField(b, graphName, g.name)
	for _, t := range g.initializers {
		b = appendBytesField(b, graphInitializer, t.encode())
	}
	for _, v := range g.inputs {
		b = appendBytesField(b, graphInput, v.encode())
	}
	for _, v := range g.outputs {
		b = appendBytesField(b, graphOutput, v.encode())
	}
	return b
}

func (n node) encode(name string) []byte {
	var b []byte
	for _, in := range n.inputs {
		b = appendStringField(b, nodeInput, in)
	}
	for _, out := range n.outputs {
		b = appendStringField(b, nodeOutput, out)
	}
	b = appendStringField(b, nodeName, name)
	b = appendStringField(b, nodeOpType, n.opType)
	for _, a := range n.attrs {
		b = appendBytesField(b, nodeAttribute, a.encode())
	}
	return b
}

// encode writes repeated scalars unpacked, as proto2 (which onnx.proto uses)
// does for fields not marked packed.
func (a Attr) encode() []byte {
	var b []byte
	b = appendStringField(b, attrName, a.name)
	switch a.kind {
	case attrKindFloat:
		b = appendFloatField(b, attrF, a.f)
	case attrKindInt:
		b = appendVarintField(b, attrI, uint64(a.i))
	case attrKindString:
		b = appendStringField(b, attrS, a.s)
	case attrKindFloats:
		for _, f := range a.floats {
			b = appendFloatField(b, attrFloats, f)
		}
	case attrKindInts:
		for _, i := range a.ints {
			b = appendVarintField(b, attrInts, uint64(i))
		}
	}
	b = appendVarintField(b, attrType, uint64(a.kind))
	return b
}

func (v valueInfo) encode() []byte {
	var shape []byte
	for i, d := range v.dims {
		var dim []byte
		if d < 0 {
			dim = appendStringField(dim, dimParam, dynamicDimName(i))
		} else {
			dim = appendVarintField(dim, dimValue, uint64(d))
		}
		shape = appendBytesField(shape, shapeDim, dim)
	}
	var tt []byte
	tt = appendVarintField(tt, tensorTypeElemType, uint64(v.elemType))
	tt = appendBytesField(tt, tensorTypeShape, shape)
	var typ []byte
	typ = appendBytesField(typ, typeTensorType, tt)
	var b []byte
	b = appendStringField(b, valueInfoName, v.name)
	b = appendBytesField(b, valueInfoType, typ)
	return b
}

func (t initializer) encode() []byte {
	var b []byte
	for _, d := range t.dims {
		b = appendVarintField(b, tensorDims, uint64(d))
	}
	b = appendVarintField(b, tensorDataType, uint64(t.elemType))
	b = appendStringField(b, tensorName, t.name)
	b = appendBytesField(b, tensorRawData, t.raw)
	return b
}

// dynamicDimName names a Dynamic dimension by position, so the batch
// dimension of every input and output is the same symbol and ONNX Runtime
// can check that they agree.
func dynamicDimName(i int) string {
	if i == 0 {
		return "batch"
	}
	return fmt.Sprintf("d%d", i)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFloatField(b []byte, num protowire.Number, v float32) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, math.Float32bits(v))
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}
