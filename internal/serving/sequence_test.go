package serving

import (
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// A sequence_batching block that does not fit the model is refused with
// the field at fault, so the version is UNAVAILABLE with that reason.
func TestSeqPlanErrors(t *testing.T) {
	inputs := []tensor.Spec{
		{Name: "input", DataType: tensor.FP32, Shape: []int64{-1, -1}},
		{Name: "state", DataType: tensor.FP32, Shape: []int64{2, -1, 128}},
		{Name: "sr", DataType: tensor.Int64, Shape: []int64{}},
	}
	outputs := []tensor.Spec{
		{Name: "output", DataType: tensor.FP32, Shape: []int64{-1, 1}},
		{Name: "stateN", DataType: tensor.FP32, Shape: []int64{-1, -1, -1}},
		{Name: "count", DataType: tensor.Int64, Shape: []int64{2, -1, 128}},
		{Name: "flat", DataType: tensor.FP32, Shape: []int64{2, -1}},
	}
	tests := []struct {
		name string
		st   repository.SequenceState
		want []string
	}{
		{"no such input", repository.SequenceState{Input: "h", Output: "stateN", BatchAxis: 1}, []string{"sequence_batching.state[0].input", `no input "h"`}},
		{"no such output", repository.SequenceState{Input: "state", Output: "hN", BatchAxis: 1}, []string{"sequence_batching.state[0].output", `no output "hN"`}},
		{"batch axis outside the rank", repository.SequenceState{Input: "state", Output: "stateN", BatchAxis: 3}, []string{"sequence_batching.state[0].batch_axis", "rank 3"}},
		{"datatype mismatch", repository.SequenceState{Input: "state", Output: "count", BatchAxis: 1}, []string{"FP32", "INT64", "one datatype"}},
		{"rank mismatch", repository.SequenceState{Input: "state", Output: "flat", BatchAxis: 1}, []string{"one shape"}},
		{"zeros need fixed dimensions", repository.SequenceState{Input: "state", Output: "stateN", BatchAxis: 0}, []string{"sequence_batching.state[0].initial", "fixed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.st.Initial = repository.StateInitialZeros
			_, err := newSeqPlan(&repository.SequenceBatching{State: []repository.SequenceState{tc.st}}, inputs, outputs)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not mention %q", err, w)
				}
			}
		})
	}
	p, err := newSeqPlan(&repository.SequenceBatching{State: []repository.SequenceState{{Input: "state", Output: "stateN", BatchAxis: 1, Initial: "zeros"}}}, inputs, outputs)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.initial[0].Shape; len(got) != 3 || got[0] != 2 || got[1] != 1 || got[2] != 128 || len(p.initial[0].Data) != 2*128*4 {
		t.Errorf("initial state %v (%d bytes), want [2 1 128] zeros", got, len(p.initial[0].Data))
	}
}
