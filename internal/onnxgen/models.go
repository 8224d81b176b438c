package onnxgen

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
)

// Sizes of the Classifier model.
const (
	ClassifierFeatures = 64
	ClassifierHidden   = 32
	ClassifierClasses  = 10
)

// SimpleWidth is the second dimension of every input and output of Simple
// and SimpleString.
const SimpleWidth = 16

// AddConstWidth is the second dimension of AddConst's input and output.
const AddConstWidth = 4

// classifierStream is the PCG stream of Classifier's weights; the seed picks
// the state, so each seed gives a different, reproducible model.
const classifierStream = 0x6f6e6e7873657276

// Simple returns a model with INT32 inputs INPUT0 and INPUT1 of shape
// [batch, 16] and outputs OUTPUT0 = INPUT0 + INPUT1 and
// OUTPUT1 = INPUT0 - INPUT1 of the same shape and type.
func Simple() []byte {
	dims := []int64{Dynamic, SimpleWidth}
	g := NewGraph("simple")
	g.AddInput("INPUT0", Int32, dims)
	g.AddInput("INPUT1", Int32, dims)
	g.AddOutput("OUTPUT0", Int32, dims)
	g.AddOutput("OUTPUT1", Int32, dims)
	g.AddNode("Add", []string{"INPUT0", "INPUT1"}, []string{"OUTPUT0"})
	g.AddNode("Sub", []string{"INPUT0", "INPUT1"}, []string{"OUTPUT1"})
	return g.Model(DefaultOpset)
}

// SimpleString returns Simple's arithmetic over STRING tensors: INPUT0 and
// INPUT1 of shape [batch, 16] hold decimal integers, which the model casts to
// INT32, adds and subtracts, and casts back to decimal strings in OUTPUT0
// (sum) and OUTPUT1 (difference).
func SimpleString() []byte {
	dims := []int64{Dynamic, SimpleWidth}
	g := NewGraph("simple_string")
	g.AddInput("INPUT0", String, dims)
	g.AddInput("INPUT1", String, dims)
	g.AddOutput("OUTPUT0", String, dims)
	g.AddOutput("OUTPUT1", String, dims)
	g.AddNode("Cast", []string{"INPUT0"}, []string{"input0_int"}, AttrInt("to", int64(Int32)))
	g.AddNode("Cast", []string{"INPUT1"}, []string{"input1_int"}, AttrInt("to", int64(Int32)))
	g.AddNode("Add", []string{"input0_int", "input1_int"}, []string{"sum_int"})
	g.AddNode("Sub", []string{"input0_int", "input1_int"}, []string{"diff_int"})
	g.AddNode("Cast", []string{"sum_int"}, []string{"OUTPUT0"}, AttrInt("to", int64(String)))
	g.AddNode("Cast", []string{"diff_int"}, []string{"OUTPUT1"}, AttrInt("to", int64(String)))
	return g.Model(DefaultOpset)
}

// Classifier returns a two-layer perceptron: FLOAT input "INPUT" of shape
// [batch, 64], a 32-unit ReLU hidden layer, a 10-unit output layer and a
// softmax, giving FLOAT "OUTPUT" of shape [batch, 10] whose rows sum to 1.
// The weights are drawn from seed alone, so the same seed always gives the
// same bytes and different seeds give different answers.
func Classifier(seed int64) []byte {
	src := rand.NewPCG(uint64(seed), classifierStream)
	g := NewGraph("classifier")
	g.AddInput("INPUT", Float, []int64{Dynamic, ClassifierFeatures})
	g.AddOutput("OUTPUT", Float, []int64{Dynamic, ClassifierClasses})
	addDense(g, src, "fc1", ClassifierFeatures, ClassifierHidden)
	addDense(g, src, "fc2", ClassifierHidden, ClassifierClasses)
	g.AddNode("Gemm", []string{"INPUT", "fc1_w", "fc1_b"}, []string{"fc1_out"})
	g.AddNode("Relu", []string{"fc1_out"}, []string{"hidden"})
	g.AddNode("Gemm", []string{"hidden", "fc2_w", "fc2_b"}, []string{"logits"})
	g.AddNode("Softmax", []string{"logits"}, []string{"OUTPUT"}, AttrInt("axis", -1))
	return g.Model(DefaultOpset)
}

// Identity returns a model that copies input "INPUT" to "OUTPUT" unchanged.
// Both have element type elemType, which may be any type ElemTypes lists,
// and shape dims, where Dynamic marks a size chosen at run time.
func Identity(elemType int32, dims []int64) []byte {
	g := NewGraph("identity")
	g.AddInput("INPUT", elemType, dims)
	g.AddOutput("OUTPUT", elemType, dims)
	g.AddNode("Identity", []string{"INPUT"}, []string{"OUTPUT"})
	return g.Model(DefaultOpset)
}

// AddConst returns a FLOAT model with input "INPUT" and output "OUTPUT" of
// shape [batch, 4] computing OUTPUT = INPUT + delta. Models built with
// different deltas are told apart by their answers, which makes them handy
// as successive versions in hot-swap tests.
func AddConst(delta float32) []byte {
	dims := []int64{Dynamic, AddConstWidth}
	g := NewGraph("add_const")
	g.AddInput("INPUT", Float, dims)
	g.AddOutput("OUTPUT", Float, dims)
	g.AddInitializer("DELTA", Float, nil, float32Bytes([]float32{delta}))
	g.AddNode("Add", []string{"INPUT", "DELTA"}, []string{"OUTPUT"})
	return g.Model(DefaultOpset)
}

// addDense adds the weight [in, out] and bias [out] initializers of one
// fully connected layer named prefix, uniformly drawn with the Glorot bound
// so the softmax stays far from both flat and one-hot.
func addDense(g *Graph, src *rand.PCG, prefix string, in, out int) {
	limit := math.Sqrt(6 / float64(in+out))
	w := make([]float32, in*out)
	for i := range w {
		w[i] = uniform(src, limit)
	}
	b := make([]float32, out)
	for i := range b {
		b[i] = uniform(src, 0.1)
	}
	g.AddInitializer(prefix+"_w", Float, []int64{int64(in), int64(out)}, float32Bytes(w))
	g.AddInitializer(prefix+"_b", Float, []int64{int64(out)}, float32Bytes(b))
}

// uniform draws from [-limit, limit) using only PCG's raw 64-bit output,
// whose sequence is fixed by the algorithm, rather than rand's float
// helpers, so the committed model files stay reproducible.
func uniform(src *rand.PCG, limit float64) float32 {
	u := float64(src.Uint64()>>11) / (1 << 53)
	return float32((2*u - 1) * limit)
}

func float32Bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

// PickyFeatureLimit is where ClassifierPicky starts rejecting: a row whose
// first feature is at least this fails the run.
const PickyFeatureLimit = 0.95

// ClassifierPicky returns Classifier(seed) that fails on some inputs: a
// row whose first feature is PickyFeatureLimit or more (or -1 or less)
// makes ONNX Runtime's Gather fail with an index out of range. Every other
// row gets exactly Classifier(seed)'s answer. With features drawn from
// [0, 1), about 5% of rows are rejected: a candidate version that rejects
// inputs its predecessor accepts.
func ClassifierPicky(seed int64) []byte {
	g := classifierGraph(seed, "classifier_picky")
	const buckets = 19 // indexes 0..18 exist: trunc(20·x) >= 19 does not
	g.AddInitializer("first", Int64, []int64{1}, int64Bytes([]int64{0}))
	g.AddInitializer("twenty", Float, nil, float32Bytes([]float32{20}))
	g.AddInitializer("guard_table", Float, []int64{buckets}, float32Bytes(make([]float32, buckets)))
	g.AddNode("Gather", []string{"INPUT", "first"}, []string{"first_feature"}, AttrInt("axis", 1))
	g.AddNode("Mul", []string{"first_feature", "twenty"}, []string{"scaled"})
	g.AddNode("Cast", []string{"scaled"}, []string{"bucket"}, AttrInt("to", int64(Int64)))
	g.AddNode("Gather", []string{"guard_table", "bucket"}, []string{"guard"}, AttrInt("axis", 0))
	g.AddNode("Add", []string{"logits", "guard"}, []string{"guarded"})
	g.AddNode("Softmax", []string{"guarded"}, []string{"OUTPUT"}, AttrInt("axis", -1))
	return g.Model(DefaultOpset)
}

// HeavyWidth and HeavyLayers size ClassifierHeavy's extra work: HeavyLayers
// products of a [batch, HeavyWidth] by a [HeavyWidth, HeavyWidth] matrix
// per run, about 25 million multiply-adds per row.
const (
	HeavyWidth  = 1024
	HeavyLayers = 24
)

// ClassifierHeavy returns Classifier(seed) with a heavy branch whose
// result is multiplied into the logits by zero: the same answers, many
// times the compute. It stands for a new version that is slower than the
// one it replaces.
func ClassifierHeavy(seed int64) []byte {
	g := classifierGraph(seed, "classifier_heavy")
	src := rand.NewPCG(uint64(seed)+1, classifierStream)
	in := make([]float32, ClassifierFeatures*HeavyWidth)
	for i := range in {
		in[i] = uniform(src, 0.1)
	}
	sq := make([]float32, HeavyWidth*HeavyWidth)
	for i := range sq {
		sq[i] = uniform(src, 0.05)
	}
	g.AddInitializer("heavy_in", Float, []int64{ClassifierFeatures, HeavyWidth}, float32Bytes(in))
	g.AddInitializer("heavy_sq", Float, []int64{HeavyWidth, HeavyWidth}, float32Bytes(sq))
	g.AddInitializer("heavy_out", Float, []int64{HeavyWidth, 1}, float32Bytes(make([]float32, HeavyWidth)))
	g.AddNode("MatMul", []string{"INPUT", "heavy_in"}, []string{"heavy_0"})
	prev := "heavy_0"
	for i := 1; i <= HeavyLayers; i++ {
		mm, act := fmt.Sprintf("heavy_mm_%d", i), fmt.Sprintf("heavy_%d", i)
		g.AddNode("MatMul", []string{prev, "heavy_sq"}, []string{mm})
		g.AddNode("Tanh", []string{mm}, []string{act})
		prev = act
	}
	g.AddNode("MatMul", []string{prev, "heavy_out"}, []string{"heavy_zero"})
	g.AddNode("Add", []string{"logits", "heavy_zero"}, []string{"heavy_logits"})
	g.AddNode("Softmax", []string{"heavy_logits"}, []string{"OUTPUT"}, AttrInt("axis", -1))
	return g.Model(DefaultOpset)
}

// classifierGraph builds Classifier(seed)'s graph up to its logits.
func classifierGraph(seed int64, name string) *Graph {
	src := rand.NewPCG(uint64(seed), classifierStream)
	g := NewGraph(name)
	g.AddInput("INPUT", Float, []int64{Dynamic, ClassifierFeatures})
	g.AddOutput("OUTPUT", Float, []int64{Dynamic, ClassifierClasses})
	addDense(g, src, "fc1", ClassifierFeatures, ClassifierHidden)
	addDense(g, src, "fc2", ClassifierHidden, ClassifierClasses)
	g.AddNode("Gemm", []string{"INPUT", "fc1_w", "fc1_b"}, []string{"fc1_out"})
	g.AddNode("Relu", []string{"fc1_out"}, []string{"hidden"})
	g.AddNode("Gemm", []string{"hidden", "fc2_w", "fc2_b"}, []string{"logits"})
	return g
}

func int64Bytes(v []int64) []byte {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, uint64(x))
	}
	return b
}
