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

// TestNoTapNoRecord shows that a request builds a tap record only when a
// tap is registered: without one, Infer allocates less.
func TestNoTapNoRecord(t *testing.T) {
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
	if with < without+1 {
		t.Errorf("Infer allocates %v times with a tap and %v without; the record should be the difference", with, without)
	}
}
