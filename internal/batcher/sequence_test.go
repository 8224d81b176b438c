package batcher

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

type fakeOwner struct{ ended int }

func (o *fakeOwner) SequenceLabel() string { return "1" }
func (o *fakeOwner) SequenceEnded()        { o.ended++ }

func startWith(o *fakeOwner, v byte) func() (SequenceOwner, []tensor.Tensor, error) {
	return func() (SequenceOwner, []tensor.Tensor, error) {
		return o, []tensor.Tensor{{Name: "s", DataType: tensor.Uint8, Shape: []int64{1}, Data: []byte{v}}}, nil
	}
}

// A failed request leaves the stored state as it was; a successful one
// replaces it; a full store with every sequence running refuses a new one
// with ErrOverloaded; ending releases the owner once.
func TestSequenceStore(t *testing.T) {
	s := NewSequences("m", SequenceLimits{MaxIdle: testTimeout, MaxSequences: 1}, nil)
	defer s.Close()
	ctx := context.Background()
	o := &fakeOwner{}
	turn, err := s.Begin(ctx, SequenceControl{ID: "a", Start: true}, startWith(o, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Begin(ctx, SequenceControl{ID: "b", Start: true}, startWith(o, 0)); !errors.Is(err, ErrOverloaded) {
		t.Errorf("new sequence while the only one runs: %v, want ErrOverloaded", err)
	}
	turn.Finish([]tensor.Tensor{{Name: "s", DataType: tensor.Uint8, Shape: []int64{1}, Data: []byte{7}}}, nil)

	turn, err = s.Begin(ctx, SequenceControl{ID: "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	turn.Finish([]tensor.Tensor{{Name: "s", DataType: tensor.Uint8, Shape: []int64{1}, Data: []byte{9}}}, errors.New("rejected"))
	turn, err = s.Begin(ctx, SequenceControl{ID: "a", End: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := turn.States()[0].Data[0]; got != 7 {
		t.Errorf("state after a failed request: %d, want 7 (unchanged)", got)
	}
	turn.Finish(nil, nil)
	if o.ended != 1 || s.Active() != 0 {
		t.Errorf("after end: owner released %d times, %d active", o.ended, s.Active())
	}
	if _, err := s.Begin(ctx, SequenceControl{ID: "a"}, nil); err == nil || !strings.Contains(err.Error(), "has ended") {
		t.Errorf("continue an ended sequence: %v", err)
	}
}

// Requests of one sequence wait for the running one: the second gets its
// turn only after the first finished, and a waiter whose context ends
// leaves.
func TestSequenceTurns(t *testing.T) {
	s := NewSequences("m", SequenceLimits{MaxIdle: testTimeout, MaxSequences: 4}, nil)
	defer s.Close()
	o := &fakeOwner{}
	first, err := s.Begin(context.Background(), SequenceControl{ID: "a", Start: true}, startWith(o, 0))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Turn, 1)
	go func() {
		turn, err := s.Begin(context.Background(), SequenceControl{ID: "a"}, nil)
		if err != nil {
			t.Error(err)
		}
		got <- turn
	}()
	select {
	case <-got:
		t.Fatal("a second request ran while the first held the turn")
	case <-time.After(testShortTimeout):
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Begin(ctx, SequenceControl{ID: "a"}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter with a cancelled context: %v", err)
	}
	first.Finish(nil, nil)
	select {
	case turn := <-got:
		turn.Finish(nil, nil)
	case <-time.After(testTimeout):
		t.Fatal("the second request never got its turn")
	}
}
