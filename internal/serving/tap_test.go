package serving

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/repository"
)

// kept is what recordingTap keeps of one record: copies only.
type kept struct {
	model, version, id, protocol string
	arm                          Arm
	code                         int
	class                        Class
	ran                          bool // queue or compute time was reported
	inputs, outputs              []string
	input0                       []byte
}

// recordingTap keeps a copy of every record and hands it on a channel.
type recordingTap struct{ got chan kept }

func (r *recordingTap) Keep(rec *Record) (kept, bool) {
	k := kept{model: rec.Model, version: rec.Version, id: rec.ID, protocol: rec.Protocol, arm: rec.Arm,
		code: rec.Code, class: rec.Class, ran: rec.Compute > 0}
	for _, t := range rec.Inputs {
		k.inputs = append(k.inputs, t.Name)
	}
	for _, t := range rec.Outputs {
		k.outputs = append(k.outputs, t.Name)
	}
	if len(rec.Inputs) > 0 {
		k.input0 = slices.Clone(rec.Inputs[0].Data)
	}
	return k, true
}

func (r *recordingTap) Consume(k kept) { r.got <- k }

func (r *recordingTap) next(t *testing.T) kept {
	t.Helper()
	select {
	case k := <-r.got:
		return k
	case <-time.After(testTimeout):
		t.Fatal("no tap record")
		return kept{}
	}
}

// statusOf is a stand-in for transport's table, enough for these tests.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalidRequest):
		return 400
	case errors.Is(err, ErrModelNotFound), errors.Is(err, ErrVersionNotFound):
		return 404
	}
	return 500
}

func TestTapSeesEveryAnsweredRequest(t *testing.T) {
	l := newFakeLoader()
	l.set("a", 1, nil)
	l.set("b", 2, nil)
	s := newTestServer(t, l, Config{Status: statusOf})
	ctx := context.Background()
	cfg := withSplit(batchingConfig(), map[string]int{"1": 1}, &repository.Shadow{Version: 2, Percent: 100})
	s.Apply(ctx, []Desired{desired("m", cfg, dv(1, "a", "x"), dv(2, "b", "x"))})
	tap := &recordingTap{got: make(chan kept, 16)}
	if err := AddTap(s, "rec", 16, tap); err != nil {
		t.Fatal(err)
	}

	ok := request("", 1, 3)
	ok.ID, ok.Protocol = "req-1", "grpc"
	if _, err := s.Infer(ctx, ok); err != nil {
		t.Fatal(err)
	}
	primary, shadow := tap.next(t), tap.next(t)
	if primary.arm == ArmShadow {
		primary, shadow = shadow, primary
	}
	want := kept{model: "m", version: "1", id: "req-1", protocol: "grpc", arm: ArmPrimary, code: 200, class: ClassOK, ran: true,
		inputs: []string{"INPUT"}, outputs: []string{"OUTPUT"}, input0: ok.Inputs[0].Data}
	check := func(name string, got, want kept) {
		t.Helper()
		if got.model != want.model || got.version != want.version || got.id != want.id || got.protocol != want.protocol ||
			got.arm != want.arm || got.code != want.code || got.class != want.class || got.ran != want.ran ||
			!slices.Equal(got.inputs, want.inputs) || !slices.Equal(got.outputs, want.outputs) || string(got.input0) != string(want.input0) {
			t.Errorf("%s: tap got %+v, want %+v", name, got, want)
		}
	}
	check("primary", primary, want)
	want.version, want.arm = "2", ArmShadow
	check("shadow", shadow, want)

	bad := request("1", 1, 0)
	bad.Inputs[0].Name = "nope"
	bad.ID = "req-2"
	if _, err := s.Infer(ctx, bad); err == nil {
		t.Fatal("bad input accepted")
	}
	check("bad input", tap.next(t), kept{model: "m", version: "1", id: "req-2", arm: ArmPrimary, code: 400, class: ClassClient,
		inputs: []string{"nope"}, input0: bad.Inputs[0].Data})

	if _, err := s.Infer(ctx, &Request{Model: "zzz", ID: "req-3"}); err == nil {
		t.Fatal("unknown model accepted")
	}
	check("unknown model", tap.next(t), kept{id: "req-3", code: 404, class: ClassClient})

	_ = s.Refuse(&Request{Model: "m", Version: "1", ID: "req-4", Protocol: "http"}, errors.New("boom"))
	check("refused", tap.next(t), kept{model: "m", version: "1", id: "req-4", protocol: "http", code: 500, class: ClassServer})
}

// blockingTap's Consume blocks until release is closed, the way a tap
// that sleeps on each record would, but without a clock.
type blockingTap struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingTap) Keep(r *Record) (string, bool) { return r.ID, true }

func (b *blockingTap) Consume(string) {
	b.once.Do(func() { close(b.started) })
	<-b.release
}

// TestSlowTapNeverDelaysRequests blocks a tap's consumer and shows that
// requests are answered all the same, and that what its full queue could
// not take is counted exactly.
func TestSlowTapNeverDelaysRequests(t *testing.T) {
	l := newFakeLoader()
	l.set("a", 1, nil)
	reg := prometheus.NewRegistry()
	sm, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := New(l, Config{}, zap.NewNop(), sm, nil)
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "a", "x"))})
	tap := &blockingTap{started: make(chan struct{}), release: make(chan struct{})}
	const queue = 3
	if err := AddTap(s, "slow", queue, tap); err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(tap.release)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	}()

	if _, err := s.Infer(ctx, request("", 1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tap.started:
	case <-time.After(testTimeout):
		t.Fatal("the tap never consumed")
	}
	// The consumer now holds the first record and is stuck. Every further
	// request must still be answered, within the test's own deadline.
	const more = 10
	done := make(chan error, 1)
	go func() {
		for range more {
			if _, err := s.Infer(ctx, request("", 1, 0)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testTimeout):
		t.Fatal("requests blocked behind a stuck tap")
	}
	if got := testutil.ToFloat64(sm.taps.WithLabelValues("slow")); got != more-queue {
		t.Errorf("onnxserve_tap_dropped_total{tap=slow} = %v, want %d", got, more-queue)
	}
}

func TestAddTapRejectsDuplicates(t *testing.T) {
	s := newTestServer(t, newFakeLoader(), Config{})
	tap := &recordingTap{got: make(chan kept, 1)}
	if err := AddTap(s, "a", 1, tap); err != nil {
		t.Fatal(err)
	}
	if err := AddTap(s, "a", 1, tap); err == nil {
		t.Error("the same tap name registered twice")
	}
	if err := AddTap[kept](s, "", 1, tap); err == nil {
		t.Error("a tap without a name registered")
	}
}
