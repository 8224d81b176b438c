//go:build !race

package serving

import (
	"context"
	"testing"
)

// discardTap keeps nothing.
type discardTap struct{}

func (discardTap) Keep(*Record) (struct{}, bool) { return struct{}{}, false }
func (discardTap) Consume(struct{})              {}

// TestTapRecordIsRecycled shows that a registered tap adds no allocation
// to Infer: the record handed to the taps comes from a pool (a request
// with no tap registered builds no record at all).
func TestTapRecordIsRecycled(t *testing.T) {
	l := newFakeLoader()
	l.set("a", 1, nil)
	s := newTestServer(t, l, Config{})
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "a", "x"))})
	req := request("", 1, 0)
	infer := func() {
		if _, err := s.Infer(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	without := testing.AllocsPerRun(200, infer)
	if err := AddTap(s, "discard", 1, discardTap{}); err != nil {
		t.Fatal(err)
	}
	with := testing.AllocsPerRun(200, infer)
	if with > without {
		t.Errorf("Infer allocates %v times with a tap that keeps nothing and %v without; the record should be recycled", with, without)
	}
}
