package serving

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// version is one loaded instance of a model version: its session, its
// batcher and the bookkeeping that lets a hot swap retire it only after its
// last request is answered. Immutable after construction but for the
// reference count.
type version struct {
	number      int64
	label       string
	fingerprint string
	sess        Model
	batch       *batcher.Batcher
	inputs      []tensor.Spec
	outputs     []tensor.Spec
	inputIndex  map[string]int
	outputIndex map[string]int
	// seq is how the version feeds sequence state; nil without
	// sequence_batching.
	seq *seqPlan
	// validator checks each request's inputs; nil for none (VersionHook).
	validator Validator

	versionCounters
	stats requestStats
	tally shadowTally
	// tuning is the batch size measurement of an auto version; nil when
	// its batch size was configured.
	tuning *BatchMeasurement

	refs     atomic.Int64
	retired  atomic.Bool
	drained  chan struct{}
	drainOne sync.Once
}

func newVersion(number int64, fingerprint string, sess Model) *version {
	v := &version{
		number:      number,
		label:       fmt.Sprint(number),
		fingerprint: fingerprint,
		sess:        sess,
		inputs:      sess.Inputs(),
		outputs:     sess.Outputs(),
		drained:     make(chan struct{}),
	}
	v.inputIndex = make(map[string]int, len(v.inputs))
	for i, in := range v.inputs {
		v.inputIndex[in.Name] = i
	}
	v.outputIndex = make(map[string]int, len(v.outputs))
	for i, out := range v.outputs {
		v.outputIndex[out.Name] = i
	}
	return v
}

func (v *version) ready() bool { return !v.retired.Load() }

// acquire takes a reference for one request; it fails once the version is
// retired, so the caller re-reads the serving set.
func (v *version) acquire() bool {
	v.refs.Add(1)
	if v.retired.Load() {
		v.release()
		return false
	}
	return true
}

func (v *version) release() {
	if v.refs.Add(-1) == 0 && v.retired.Load() {
		v.drainOne.Do(func() { close(v.drained) })
	}
}

// retire stops new acquisitions; drained closes when the last holder
// releases.
func (v *version) retire() {
	v.retired.Store(true)
	if v.refs.Load() == 0 {
		v.drainOne.Do(func() { close(v.drained) })
	}
}

// arrange checks a request's inputs against the model's declared inputs
// (names, datatypes, shapes) and returns them in declared order. It is the
// one place that does: the batcher and the runtime take its result as their
// precondition. Each tensor's own consistency (data against shape) is the
// decoder's check (see Request).
func (v *version) arrange(in []tensor.Tensor) ([]tensor.Tensor, error) {
	return v.arrangeWith(in, nil)
}

// arrangeWith is arrange for a version with sequence state: the client
// sends every input but the states, which come from states (the sequence's
// stored state, in config order).
func (v *version) arrangeWith(in, states []tensor.Tensor) ([]tensor.Tensor, error) {
	out := make([]tensor.Tensor, len(v.inputs))
	var seenBuf [16]bool
	seen := seenBuf[:0]
	if len(v.inputs) > len(seenBuf) {
		seen = make([]bool, len(v.inputs))
	} else {
		seen = seenBuf[:len(v.inputs)]
	}
	for _, t := range in {
		i, ok := v.inputIndex[t.Name]
		if !ok {
			return nil, tensor.Invalidf("unknown input %q (the model's inputs are %s)", t.Name, specNames(v.inputs))
		}
		if seen[i] {
			return nil, tensor.Invalidf("input %q given twice", t.Name)
		}
		if v.seq != nil && v.seq.isState[i] {
			return nil, tensor.Invalidf("input %q: the server holds this sequence state (sequence_batching.state); do not send it", t.Name)
		}
		seen[i] = true
		if err := v.inputs[i].Check(t); err != nil {
			return nil, err
		}
		out[i] = v.inputs[i].Conform(t)
	}
	if v.seq != nil {
		for k, i := range v.seq.stateIn {
			out[i], seen[i] = states[k], true
		}
	}
	for i, ok := range seen {
		if !ok {
			return nil, tensor.Invalidf("missing input %q", v.inputs[i].Name)
		}
	}
	return out, nil
}

// outputIndexes maps requested output names to model output positions; nil
// means all outputs in declared order.
func (v *version) outputIndexes(names []string) ([]int, error) {
	if len(names) == 0 {
		return nil, nil
	}
	idx := make([]int, len(names))
	for i, n := range names {
		j, ok := v.outputIndex[n]
		if !ok {
			return nil, tensor.Invalidf("unknown output %q (the model's outputs are %s)", n, specNames(v.outputs))
		}
		idx[i] = j
	}
	return idx, nil
}

func specNames(specs []tensor.Spec) string {
	s := ""
	for i, sp := range specs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", sp.Name)
	}
	return s
}

// sameSignature reports whether two instances declare identical inputs and
// outputs, the condition for replacing one with the other in place.
func sameSignature(a, b *version) error {
	if err := sameSpecs("input", a.inputs, b.inputs); err != nil {
		return err
	}
	return sameSpecs("output", a.outputs, b.outputs)
}

func sameSpecs(kind string, a, b []tensor.Spec) error {
	if len(a) != len(b) {
		return fmt.Errorf("%ss changed incompatibly: %d %ss, was %d", kind, len(b), kind, len(a))
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].DataType != b[i].DataType || fmt.Sprint(a[i].Shape) != fmt.Sprint(b[i].Shape) {
			return fmt.Errorf("%s %q changed incompatibly: %s %v, was %q %s %v", kind, b[i].Name, b[i].DataType, b[i].Shape, a[i].Name, a[i].DataType, a[i].Shape)
		}
	}
	return nil
}
