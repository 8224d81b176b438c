package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
)

// errVerify is wrapped by every answer that fails its check.
var errVerify = errors.New("verify")

// tensorSpec is one input or output of a workload: name, v2 data type and
// the shape of one request (batch dimension 1).
type tensorSpec struct {
	name     string
	datatype string
	shape    []int64
}

// bytes returns the size of the raw little-endian data of s.
func (s tensorSpec) bytes() int {
	n := 4 // INT32 and FP32, the only types the workloads use
	for _, d := range s.shape {
		n *= int(d)
	}
	return n
}

// output is one decoded output tensor, its data as raw little-endian bytes
// whatever the wire form was.
type output struct {
	name     string
	datatype string
	shape    []int64
	data     []byte
}

// workload is the requests sent to one model and the check of its answers.
// Requests cycle through a few variants of different data. A workload is
// safe for concurrent use once built.
type workload struct {
	name    string
	inputs  []tensorSpec
	outputs []tensorSpec
	// variants[v][i] is the raw data of input i in variant v.
	variants [][][]byte
	check    func(w *workload, v int, outs []output) error
	// refs[v] holds the first answer seen for variant v, for workloads whose
	// answer cannot be computed here.
	refs []atomic.Pointer[[]output]
}

// variantCount is how many different requests a workload cycles through:
// enough that rows swapped between requests are caught, few enough that
// their encodings stay in cache.
const variantCount = 8

// newWorkload builds the named workload with seeded random data.
func newWorkload(name string, seed uint64) (*workload, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &workload{name: name, refs: make([]atomic.Pointer[[]output], variantCount)}
	switch name {
	case "simple":
		w.inputs = []tensorSpec{{"INPUT0", "INT32", []int64{1, 16}}, {"INPUT1", "INT32", []int64{1, 16}}}
		w.outputs = []tensorSpec{{"OUTPUT0", "INT32", []int64{1, 16}}, {"OUTPUT1", "INT32", []int64{1, 16}}}
		w.check = checkSimple
	case "classifier":
		w.inputs = []tensorSpec{{"INPUT", "FP32", []int64{1, 64}}}
		w.outputs = []tensorSpec{{"OUTPUT", "FP32", []int64{1, 10}}}
		w.check = checkSoftmax
	case "ocr_cls":
		w.inputs = []tensorSpec{{"x", "FP32", []int64{1, 3, 48, 192}}}
		w.outputs = []tensorSpec{{"softmax_0.tmp_0", "FP32", []int64{1, 2}}}
		w.check = checkSoftmax
	default:
		return nil, fmt.Errorf("unknown workload %q: want simple, classifier or ocr_cls", name)
	}
	for range variantCount {
		var in [][]byte
		for _, s := range w.inputs {
			in = append(in, randomData(s, rng))
		}
		w.variants = append(w.variants, in)
	}
	return w, nil
}

// randomData fills s: INT32 in [-1000, 1000), FP32 in [0, 1), like
// normalised pixels.
func randomData(s tensorSpec, rng *rand.Rand) []byte {
	b := make([]byte, s.bytes())
	for i := 0; i < len(b); i += 4 {
		var u uint32
		if s.datatype == "INT32" {
			u = uint32(int32(rng.IntN(2000) - 1000))
		} else {
			u = math.Float32bits(rng.Float32())
		}
		binary.LittleEndian.PutUint32(b[i:], u)
	}
	return b
}

// verify checks one answer to variant v.
func (w *workload) verify(v int, outs []output) error {
	if len(outs) != len(w.outputs) {
		return fmt.Errorf("%w: %d outputs, want %d", errVerify, len(outs), len(w.outputs))
	}
	for i, want := range w.outputs {
		got := outs[i]
		if got.name != want.name || got.datatype != want.datatype || !slices.Equal(got.shape, want.shape) {
			return fmt.Errorf("%w: output %d is %s %s %v, want %s %s %v", errVerify, i,
				got.name, got.datatype, got.shape, want.name, want.datatype, want.shape)
		}
		if len(got.data) != want.bytes() {
			return fmt.Errorf("%w: output %q has %d bytes, want %d", errVerify, got.name, len(got.data), want.bytes())
		}
	}
	return w.check(w, v, outs)
}

// checkSimple recomputes simple's arithmetic: OUTPUT0 = INPUT0 + INPUT1,
// OUTPUT1 = INPUT0 - INPUT1, element by element.
func checkSimple(w *workload, v int, outs []output) error {
	a, b := w.variants[v][0], w.variants[v][1]
	for i := 0; i < len(a); i += 4 {
		x := int32(binary.LittleEndian.Uint32(a[i:]))
		y := int32(binary.LittleEndian.Uint32(b[i:]))
		sum := int32(binary.LittleEndian.Uint32(outs[0].data[i:]))
		diff := int32(binary.LittleEndian.Uint32(outs[1].data[i:]))
		if sum != x+y || diff != x-y {
			return fmt.Errorf("%w: element %d: got %d and %d, want %d and %d", errVerify, i/4, sum, diff, x+y, x-y)
		}
	}
	return nil
}

// checkSoftmax requires each output row to sum to one and the answer to
// match the first answer seen for the same variant. Batched and unbatched
// runs may differ in the last bits, hence the tolerance.
func checkSoftmax(w *workload, v int, outs []output) error {
	const tolerance = 1e-3
	var sum float64
	for i := 0; i < len(outs[0].data); i += 4 {
		sum += float64(math.Float32frombits(binary.LittleEndian.Uint32(outs[0].data[i:])))
	}
	if math.Abs(sum-1) > tolerance {
		return fmt.Errorf("%w: output %q sums to %g, want 1", errVerify, outs[0].name, sum)
	}
	ref := w.refs[v].Load()
	if ref == nil {
		kept := []output{{data: bytes.Clone(outs[0].data)}}
		if w.refs[v].CompareAndSwap(nil, &kept) {
			return nil
		}
		ref = w.refs[v].Load()
	}
	want := (*ref)[0].data
	for i := 0; i < len(want); i += 4 {
		g := math.Float32frombits(binary.LittleEndian.Uint32(outs[0].data[i:]))
		r := math.Float32frombits(binary.LittleEndian.Uint32(want[i:]))
		if math.Abs(float64(g-r)) > tolerance {
			return fmt.Errorf("%w: output %q element %d is %g, an earlier answer to the same input was %g", errVerify, outs[0].name, i/4, g, r)
		}
	}
	return nil
}
