package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/onnxserve/onnxserve/internal/runtime"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// stateSpec pairs a state input with the output that carries its next
// value, and the axis along which sequences stack in it.
type stateSpec struct {
	input, output string
	axis          int
}

// parseStates reads --state: "in=out@axis", several separated by ';'; the
// axis defaults to 0.
func parseStates(s string) ([]stateSpec, error) {
	var out []stateSpec
	for _, f := range strings.Split(s, ";") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pair, axis, hasAxis := strings.Cut(f, "@")
		in, outName, ok := strings.Cut(pair, "=")
		if !ok || in == "" || outName == "" {
			return nil, fmt.Errorf("--state: %q is not input=output[@axis]", f)
		}
		st := stateSpec{input: in, output: outName}
		if hasAxis {
			n, err := strconv.Atoi(axis)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("--state: %q: the axis must be an integer >= 0", f)
			}
			st.axis = n
		}
		out = append(out, st)
	}
	return out, nil
}

// parseValues reads --value: "name=number", several separated by ';'.
func parseValues(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range strings.Split(s, ";") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		name, v, ok := strings.Cut(f, "=")
		if !ok || name == "" || v == "" {
			return nil, fmt.Errorf("--value: %q is not name=number", f)
		}
		out[name] = v
	}
	return out, nil
}

// seqState is one state of a seqPlan: where it is fed and read back.
type seqState struct {
	in, out int // input and output indexes
	axis    int
	spec    tensor.Spec
}

// seqPlan is how the stateful mode feeds a model: every input in declared
// order is the streamed input (one chunk per sequence and run), a state
// (zeros at a sequence's start, then the model's own output) or a fixed
// value.
type seqPlan struct {
	inputs []tensor.Spec
	stream int
	// row is the streamed input's shape without the batch dimension, and
	// rowBytes the bytes of one chunk.
	row      []int64
	rowBytes int
	states   []seqState
	fixed    map[int]tensor.Tensor
	// record is the first output that is no state, kept for sequence 0;
	// -1 when it is not FP32.
	record int
}

// newSeqPlan checks the stateful mode's settings against the model: every
// state names an input and an output of one data type whose dimensions
// are fixed but for the stacking axis, every value names a one-element
// input, and exactly one input is left to stream, FP32 with a dynamic
// first dimension and its other dimensions fixed by the model or dims.
func newSeqPlan(ins, outs []tensor.Spec, states []stateSpec, values map[string]string, dims map[string][]int64) (*seqPlan, error) {
	p := &seqPlan{inputs: ins, stream: -1, fixed: map[int]tensor.Tensor{}, record: -1}
	inIdx := func(name string) int {
		return slices.IndexFunc(ins, func(s tensor.Spec) bool { return s.Name == name })
	}
	outIdx := func(name string) int {
		return slices.IndexFunc(outs, func(s tensor.Spec) bool { return s.Name == name })
	}
	used := map[int]bool{}
	stateOut := map[int]bool{}
	for _, st := range states {
		i, o := inIdx(st.input), outIdx(st.output)
		if i < 0 || o < 0 {
			return nil, fmt.Errorf("--state %s=%s: the model has no input %q or no output %q", st.input, st.output, st.input, st.output)
		}
		in, out := ins[i], outs[o]
		if in.DataType != out.DataType || len(in.Shape) != len(out.Shape) || st.axis >= len(in.Shape) {
			return nil, fmt.Errorf("--state %s=%s@%d: input %s %v and output %s %v do not carry one state along axis %d",
				st.input, st.output, st.axis, in.DataType, in.Shape, out.DataType, out.Shape, st.axis)
		}
		for d, n := range in.Shape {
			if d != st.axis && n < 0 {
				return nil, fmt.Errorf("--state %s: dimension %d of %v is open; only the stacking axis %d may be", st.input, d, in.Shape, st.axis)
			}
		}
		if used[i] {
			return nil, fmt.Errorf("--state: input %q is named twice", st.input)
		}
		used[i], stateOut[o] = true, true
		p.states = append(p.states, seqState{in: i, out: o, axis: st.axis, spec: in})
	}
	for name, v := range values {
		i := inIdx(name)
		if i < 0 || used[i] {
			return nil, fmt.Errorf("--value %s: no such input, or it is a state", name)
		}
		shape := ins[i].Shape
		if n, err := tensor.ElementCount(shape); err != nil || n != 1 {
			return nil, fmt.Errorf("--value %s: input shape %v is not one element", name, shape)
		}
		data, err := valueBytes(ins[i].DataType, v)
		if err != nil {
			return nil, fmt.Errorf("--value %s: %w", name, err)
		}
		used[i] = true
		p.fixed[i] = tensor.Tensor{Name: name, DataType: ins[i].DataType, Shape: slices.Clone(shape), Data: data}
	}
	for i, sp := range ins {
		if used[i] {
			continue
		}
		if p.stream >= 0 {
			return nil, fmt.Errorf("inputs %q and %q are neither a state nor a --value; exactly one is streamed", ins[p.stream].Name, sp.Name)
		}
		p.stream = i
	}
	if p.stream < 0 {
		return nil, fmt.Errorf("no input is left to stream the sequence data into")
	}
	sp := ins[p.stream]
	if sp.DataType != tensor.FP32 || len(sp.Shape) < 2 || sp.Shape[0] >= 0 {
		return nil, fmt.Errorf("streamed input %q is %s %v: it must be FP32 with a dynamic first (batch) dimension", sp.Name, sp.DataType, sp.Shape)
	}
	p.row = slices.Clone(sp.Shape[1:])
	if given, ok := dims[sp.Name]; ok {
		if len(given) != len(p.row) {
			return nil, fmt.Errorf("--dims %s: %d dimensions given, the input has %d besides the batch", sp.Name, len(given), len(p.row))
		}
		copy(p.row, given)
	}
	n, err := tensor.ElementCount(p.row)
	if err != nil {
		return nil, fmt.Errorf("streamed input %q: dimensions %v are open; give them with --dims %s=...", sp.Name, p.row, sp.Name)
	}
	p.rowBytes = int(n) * 4
	for o, sp := range outs {
		if !stateOut[o] {
			if sp.DataType == tensor.FP32 {
				p.record = o
			}
			break
		}
	}
	return p, nil
}

// valueBytes encodes one number as an element of dt, little-endian.
func valueBytes(dt tensor.DataType, v string) ([]byte, error) {
	switch dt {
	case tensor.FP32, tensor.FP64:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", v)
		}
		if dt == tensor.FP32 {
			return binary.LittleEndian.AppendUint32(nil, math.Float32bits(float32(f))), nil
		}
		return binary.LittleEndian.AppendUint64(nil, math.Float64bits(f)), nil
	case tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64:
		n, err := strconv.ParseInt(v, 10, 8*dt.Size())
		if err != nil {
			return nil, fmt.Errorf("%q is not a %s", v, dt)
		}
		return binary.LittleEndian.AppendUint64(nil, uint64(n))[:dt.Size()], nil
	case tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		n, err := strconv.ParseUint(v, 10, 8*dt.Size())
		if err != nil {
			return nil, fmt.Errorf("%q is not a %s", v, dt)
		}
		return binary.LittleEndian.AppendUint64(nil, n)[:dt.Size()], nil
	}
	return nil, fmt.Errorf("data type %s is not supported", dt)
}

// seqData is the streamed chunks: sequences × chunks × one row each.
type seqData struct {
	b                 []byte
	sequences, chunks int
	rowBytes          int
}

// readSeqData reads a file of float32 little-endian chunks, sequence after
// sequence, and splits it into sequences of equal length.
func readSeqData(path string, sequences, rowBytes int) (*seqData, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return splitSeqData(b, sequences, rowBytes)
}

func splitSeqData(b []byte, sequences, rowBytes int) (*seqData, error) {
	per := sequences * rowBytes
	if sequences < 1 || rowBytes < 1 || len(b) == 0 || len(b)%per != 0 {
		return nil, fmt.Errorf("sequence data of %d bytes is not %d sequences of whole %d-byte chunks", len(b), sequences, rowBytes)
	}
	return &seqData{b: b, sequences: sequences, chunks: len(b) / per, rowBytes: rowBytes}, nil
}

// chunk returns chunk c of sequence s.
func (d *seqData) chunk(s, c int) []byte {
	off := (s*d.chunks + c) * d.rowBytes
	return d.b[off : off+d.rowBytes]
}

// group runs a few sequences in lockstep, one chunk of each per run,
// their states stacked along each state's axis and fed back from one run
// to the next, as a client carrying the state itself would. It is used by
// one goroutine.
type group struct {
	sess  *runtime.Session
	plan  *seqPlan
	data  *seqData
	in    []tensor.Tensor
	feed  []byte
	first int
	n     int
}

func newGroup(sess *runtime.Session, plan *seqPlan, data *seqData, most int) *group {
	return &group{sess: sess, plan: plan, data: data, in: make([]tensor.Tensor, len(plan.inputs)), feed: make([]byte, most*data.rowBytes)}
}

// reset starts sequences first to first+n-1 afresh, from zero states.
func (g *group) reset(first, n int) error {
	g.first, g.n = first, n
	for i, t := range g.plan.fixed {
		g.in[i] = t
	}
	for _, st := range g.plan.states {
		shape := slices.Clone(st.spec.Shape)
		shape[st.axis] = int64(n)
		size, err := tensor.ElementCount(shape)
		if err != nil {
			return err
		}
		g.in[st.in] = tensor.Tensor{Name: st.spec.Name, DataType: st.spec.DataType, Shape: shape, Data: make([]byte, int(size)*st.spec.DataType.Size())}
	}
	return nil
}

// step runs chunk c of every sequence of the group and returns the
// outputs and the time of the run itself.
func (g *group) step(ctx context.Context, c int) ([]tensor.Tensor, time.Duration, error) {
	rb := g.data.rowBytes
	buf := g.feed[:g.n*rb]
	for k := range g.n {
		copy(buf[k*rb:], g.data.chunk(g.first+k, c))
	}
	sp := g.plan.inputs[g.plan.stream]
	g.in[g.plan.stream] = tensor.Tensor{Name: sp.Name, DataType: sp.DataType, Shape: append([]int64{int64(g.n)}, g.plan.row...), Data: buf}
	t := time.Now()
	out, err := g.sess.Run(ctx, g.in)
	d := time.Since(t)
	if err != nil {
		return nil, d, fmt.Errorf("sequences %d to %d, chunk %d: %w", g.first, g.first+g.n-1, c, err)
	}
	for _, st := range g.plan.states {
		o := out[st.out]
		g.in[st.in] = tensor.Tensor{Name: st.spec.Name, DataType: o.DataType, Shape: o.Shape, Data: o.Data}
	}
	return out, d, nil
}

// firstRow returns row 0 of an FP32 output as float32 values.
func firstRow(t tensor.Tensor) []float32 {
	n := len(t.Data) / 4
	if len(t.Shape) > 0 && t.Shape[0] > 0 {
		n /= int(t.Shape[0])
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

// measureSequences runs every sequence once, in groups of bs run in
// lockstep, after warming up on the first group for warmup, and records
// sequence 0's first output.
func measureSequences(sess *runtime.Session, plan *seqPlan, data *seqData, bs int, warmup time.Duration) (Point, error) {
	ctx := context.Background()
	g := newGroup(sess, plan, data, bs)
	if warmup > 0 {
		end := time.Now().Add(warmup)
		for time.Now().Before(end) {
			if err := g.reset(0, min(bs, data.sequences)); err != nil {
				return Point{}, err
			}
			for c := 0; c < data.chunks && time.Now().Before(end); c++ {
				if _, _, err := g.step(ctx, c); err != nil {
					return Point{}, err
				}
			}
		}
	}
	lat := make([]time.Duration, 0, data.chunks*((data.sequences+bs-1)/bs))
	var rec []float32
	cpu0 := cpuTime()
	start := time.Now()
	for first := 0; first < data.sequences; first += bs {
		if err := g.reset(first, min(bs, data.sequences-first)); err != nil {
			return Point{}, err
		}
		for c := range data.chunks {
			out, d, err := g.step(ctx, c)
			if err != nil {
				return Point{}, err
			}
			lat = append(lat, d)
			if first == 0 && plan.record >= 0 {
				rec = append(rec, firstRow(out[plan.record])...)
			}
		}
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	slices.Sort(lat)
	p := point(bs, lat, elapsed, cpu, float64(data.sequences*data.chunks))
	p.Sequence0 = rec
	return p, nil
}
