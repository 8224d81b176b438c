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

// gateTap keeps each record's Queue as a sequence number. Its first
// Consume blocks until gate is closed; consumed is read once the tap's
// goroutine is done (after Close).
type gateTap struct {
	started, gate chan struct{}
	once          sync.Once
	consumed      []int
}

func (g *gateTap) Keep(r *Record) (int, bool) { return int(r.Queue), true }

func (g *gateTap) Consume(v int) {
	g.once.Do(func() {
		close(g.started)
		<-g.gate
	})
	g.consumed = append(g.consumed, v)
}

// TestTapQueue offers numbered records straight to a tap's queue: values
// are consumed in order, those a full queue cannot take are counted, and
// close consumes what is queued before it returns; a value offered after
// close is neither consumed nor blocks.
func TestTapQueue(t *testing.T) {
	for _, tc := range []struct {
		name         string
		queue        int
		offers       int
		block        bool // the consumer is stuck on value 0 while the rest are offered
		wantConsumed int  // 0..wantConsumed-1 are consumed, the rest dropped
	}{
		{name: "in order", queue: 10000, offers: 5000, wantConsumed: 5000},
		// Value 0 is in Consume, no longer queued: 1..4 fill the queue.
		{name: "full queue drops", queue: 4, offers: 11, block: true, wantConsumed: 5},
		{name: "queue of one", queue: 1, offers: 5, block: true, wantConsumed: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sm, err := NewMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			s := New(newFakeLoader(), Config{}, zap.NewNop(), sm, nil)
			tap := &gateTap{started: make(chan struct{}), gate: make(chan struct{})}
			if !tc.block {
				close(tap.gate)
			}
			if err := AddTap(s, "gate", tc.queue, tap); err != nil {
				t.Fatal(err)
			}
			offer := func(i int) { s.taps.hand(&Record{Queue: time.Duration(i)}) }
			offer(0)
			if tc.block {
				select {
				case <-tap.started:
				case <-time.After(testTimeout):
					t.Fatal("the tap never consumed")
				}
			}
			for i := 1; i < tc.offers; i++ {
				offer(i)
			}
			closed := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				closed <- s.Close(ctx)
			}()
			if tc.block {
				close(tap.gate)
			}
			select {
			case err := <-closed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(testTimeout):
				t.Fatal("Close did not return")
			}
			offer(tc.offers) // after close: neither consumed nor blocking

			want := make([]int, tc.wantConsumed)
			for i := range want {
				want[i] = i
			}
			if !slices.Equal(tap.consumed, want) {
				t.Errorf("consumed %v, want %v", tap.consumed, want)
			}
			if got, want := testutil.ToFloat64(sm.taps.WithLabelValues("gate")), float64(tc.offers-tc.wantConsumed); got != want {
				t.Errorf("onnxserve_tap_dropped_total{tap=gate} = %v, want %v", got, want)
			}
		})
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
