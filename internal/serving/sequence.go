package serving

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Sequence is the sequence part of a request (sequence_batching): Triton's
// sequence_id, sequence_start and sequence_end parameters. The zero value
// means the request carries none.
type Sequence = batcher.SequenceControl

// seqPlan is how a version with sequence_batching feeds its state: which
// inputs come from the sequence's stored state, which outputs become the
// next state, and each state's initial value for one sequence.
type seqPlan struct {
	stateIn  []int // input positions, in config order
	stateOut []int // output positions, in config order
	isState  []bool
	isOutput []bool
	// initial holds one sequence's first state per config entry, named
	// after its input.
	initial []tensor.Tensor
	// userOutputs are the outputs returned when a request names none: all
	// but the states.
	userOutputs []int
}

// batchAxes returns the axis each input and output of a batching version is
// stacked along: 0, none for a scalar, and the configured axis for a state.
func batchAxes(inputs, outputs []tensor.Spec, sb *repository.SequenceBatching) (in, out []int) {
	axis := func(sp tensor.Spec) int {
		if len(sp.Shape) == 0 {
			return tensor.NoAxis
		}
		return 0
	}
	in = make([]int, len(inputs))
	for i, sp := range inputs {
		in[i] = axis(sp)
	}
	out = make([]int, len(outputs))
	for i, sp := range outputs {
		out[i] = axis(sp)
	}
	if sb != nil {
		for _, st := range sb.State {
			if i := slices.IndexFunc(inputs, func(sp tensor.Spec) bool { return sp.Name == st.Input }); i >= 0 {
				in[i] = st.BatchAxis
			}
			if i := slices.IndexFunc(outputs, func(sp tensor.Spec) bool { return sp.Name == st.Output }); i >= 0 {
				out[i] = st.BatchAxis
			}
		}
	}
	return in, out
}

// newSeqPlan checks a sequence_batching block against the model's inputs
// and outputs; its errors name the config field.
func newSeqPlan(sb *repository.SequenceBatching, inputs, outputs []tensor.Spec) (*seqPlan, error) {
	p := &seqPlan{isState: make([]bool, len(inputs)), isOutput: make([]bool, len(outputs))}
	for k, st := range sb.State {
		f := fmt.Sprintf("sequence_batching.state[%d]", k)
		i := slices.IndexFunc(inputs, func(sp tensor.Spec) bool { return sp.Name == st.Input })
		if i < 0 {
			return nil, fmt.Errorf("%s.input: the model has no input %q (its inputs are %s)", f, st.Input, specNames(inputs))
		}
		o := slices.IndexFunc(outputs, func(sp tensor.Spec) bool { return sp.Name == st.Output })
		if o < 0 {
			return nil, fmt.Errorf("%s.output: the model has no output %q (its outputs are %s)", f, st.Output, specNames(outputs))
		}
		in, out := inputs[i], outputs[o]
		if st.BatchAxis >= len(in.Shape) {
			return nil, fmt.Errorf("%s.batch_axis: %d is outside input %q of rank %d %v", f, st.BatchAxis, in.Name, len(in.Shape), in.Shape)
		}
		if in.DataType != out.DataType {
			return nil, fmt.Errorf("%s: input %q is %s but output %q is %s; a state's input and output need one datatype", f, in.Name, in.DataType, out.Name, out.DataType)
		}
		if in.DataType == tensor.Bytes {
			return nil, fmt.Errorf("%s: input %q is BYTES; a state needs a fixed-width datatype", f, in.Name)
		}
		if len(in.Shape) != len(out.Shape) {
			return nil, fmt.Errorf("%s: input %q has shape %v but output %q has %v; a state's input and output need one shape", f, in.Name, in.Shape, out.Name, out.Shape)
		}
		shape := slices.Clone(in.Shape)
		for d := range shape {
			if in.Shape[d] >= 0 && out.Shape[d] >= 0 && in.Shape[d] != out.Shape[d] {
				return nil, fmt.Errorf("%s: input %q has shape %v but output %q has %v; they differ at dimension %d", f, in.Name, in.Shape, out.Name, out.Shape, d)
			}
			if d == st.BatchAxis {
				shape[d] = 1
				continue
			}
			if shape[d] < 0 {
				shape[d] = out.Shape[d]
			}
			if shape[d] < 0 {
				return nil, fmt.Errorf("%s.initial: input %q has shape %v: every dimension but batch_axis %d must be fixed to make its zeros", f, in.Name, in.Shape, st.BatchAxis)
			}
		}
		n, err := tensor.ElementCount(shape)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		p.stateIn = append(p.stateIn, i)
		p.stateOut = append(p.stateOut, o)
		p.isState[i], p.isOutput[o] = true, true
		p.initial = append(p.initial, tensor.Tensor{Name: in.Name, DataType: in.DataType, Shape: shape, Data: make([]byte, n*int64(in.DataType.Size()))})
	}
	for o := range outputs {
		if !p.isOutput[o] {
			p.userOutputs = append(p.userOutputs, o)
		}
	}
	return p, nil
}

// SequenceLabel implements batcher.SequenceOwner.
func (v *version) SequenceLabel() string { return v.label }

// SequenceEnded implements batcher.SequenceOwner: a sequence holds a
// reference on the version it started on, so a version replaced by a hot
// swap drains only once its sequences have ended.
func (v *version) SequenceEnded() { v.release() }

// sequences returns the model's sequence store, nil when it has none.
func (m *model) sequences() *batcher.Sequences { return m.seqs.Load() }

// setSequences creates, updates or keeps the model's sequence store for a
// new config. A store stays once made: versions of an older config may
// still hold sequences.
func (s *Server) setSequences(m *model, sb *repository.SequenceBatching) {
	m.sequential.Store(sb != nil)
	if sb == nil {
		return
	}
	lim := batcher.SequenceLimits{MaxIdle: sb.MaxSequenceIdle, MaxSequences: sb.MaxSequences}
	if st := m.seqs.Load(); st != nil {
		st.SetLimits(lim)
		return
	}
	m.seqs.Store(batcher.NewSequences(m.name, lim, s.metrics.sequences()))
}

// inferSequence runs a request of a sequence model: its turn in the
// sequence, on the version the sequence started on, with the stored state.
func (s *Server) inferSequence(ctx context.Context, m *model, seqs *batcher.Sequences, req *Request) (*Response, error) {
	if req.Sequence.ID == "" && !m.sequential.Load() {
		return nil, errNoSequence
	}
	turn, err := seqs.Begin(ctx, req.Sequence, func() (batcher.SequenceOwner, []tensor.Tensor, error) {
		for range maxRetire {
			v, _, err := m.pick(req)
			if err != nil {
				return nil, nil, err
			}
			if v.seq == nil {
				return nil, nil, tensor.Invalidf("parameter \"sequence_start\": model %q version %s has no sequence_batching", m.name, v.label)
			}
			if v.acquire() {
				return v, v.seq.initial, nil
			}
		}
		return nil, nil, fmt.Errorf("model %q: versions changing too fast: %w", m.name, ErrNotReady)
	})
	if err != nil {
		return nil, s.refuse(req, m, err)
	}
	v := turn.Owner().(*version)
	v.refs.Add(1) // the request's own reference; the version may be retired
	defer v.release()
	var tm batcher.Timing
	resp, in, next, err := s.runSequence(ctx, m, v, req, turn.States(), &tm)
	turn.Finish(next, err)
	s.tapAnswered(req, m, v, in, resp, err, &tm)
	return resp, err
}

// errNoSequence marks a request without sequence parameters for a model
// that has none configured now: it takes the ordinary path.
var errNoSequence = errors.New("no sequence")

// runSequence is run for a request of a sequence: the stored states join
// its inputs, and the state outputs come back as next.
func (s *Server) runSequence(ctx context.Context, m *model, v *version, req *Request, states []tensor.Tensor, tm *batcher.Timing) (*Response, []tensor.Tensor, []tensor.Tensor, error) {
	fail := func(in []tensor.Tensor, err error) (*Response, []tensor.Tensor, []tensor.Tensor, error) {
		return nil, in, nil, &labelError{m.name, v.label, err, true}
	}
	if req.Version != "" && req.Version != v.label {
		return fail(nil, tensor.Invalidf("parameter \"sequence_id\": sequence %s runs on version %s; the request names version %s", req.Sequence.ID, v.label, req.Version))
	}
	in, err := v.arrangeWith(req.Inputs, states)
	if err != nil {
		return fail(nil, err)
	}
	for i, t := range in {
		if v.seq.isState[i] || len(t.Shape) == 0 {
			continue
		}
		if t.Shape[0] != 1 {
			return fail(in, tensor.Invalidf("input %q: shape %v: a request of a sequence carries one row (batch size 1), got %d", t.Name, t.Shape, t.Shape[0]))
		}
	}
	outIdx, err := v.outputIndexes(req.Outputs)
	if err != nil {
		return fail(in, err)
	}
	if v.validator != nil {
		if err := v.validator.Validate(in); err != nil {
			return fail(in, err)
		}
	}
	if outIdx == nil {
		outIdx = v.seq.userOutputs
	}
	start := time.Now()
	out, err := v.batch.SubmitTimed(ctx, in, tm)
	v.stats.record(start, err)
	if err != nil {
		return fail(in, err)
	}
	next := make([]tensor.Tensor, len(v.seq.stateOut))
	for k, o := range v.seq.stateOut {
		t, want := out[o], v.seq.initial[k]
		if t.DataType != want.DataType || !slices.Equal(t.Shape, want.Shape) {
			return fail(in, fmt.Errorf("output %q: the model returned state of shape %v %s, the sequence's state is %v %s", t.Name, t.Shape, t.DataType, want.Shape, want.DataType))
		}
		next[k] = tensor.Tensor{Name: want.Name, DataType: t.DataType, Shape: t.Shape, Data: t.Data}
	}
	resp := &Response{Model: m.name, Version: v.label, ID: req.ID, all: out, Outputs: make([]tensor.Tensor, len(outIdx))}
	for i, j := range outIdx {
		resp.Outputs[i] = out[j]
	}
	return resp, in, next, nil
}
