package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/router"
	"github.com/onnxserve/onnxserve/internal/serving"
)

// fakeServer is the serving core as the rollout sees it: versions, a
// split, a traffic claim, shadow counts, accuracy and output drift, all set
// by the test.
type fakeServer struct {
	mu       sync.Mutex
	ready    []string // ascending
	removed  map[string]bool
	split    map[string]int
	shadow   *router.Shadow
	owner    string
	shadows  map[string]serving.ShadowCounts
	accuracy map[string][2]int64 // version → correct, labelled
	noAcc    bool
	drift    map[string]OutputDrift
	moves    int
}

func newFake(versions ...string) *fakeServer {
	return &fakeServer{ready: versions, removed: map[string]bool{}, shadows: map[string]serving.ShadowCounts{}, accuracy: map[string][2]int64{},
		drift: map[string]OutputDrift{}}
}

func (f *fakeServer) ClaimTraffic(model, owner string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.owner != "" && f.owner != owner {
		return serving.ErrConflict
	}
	f.owner = owner
	return nil
}

func (f *fakeServer) ReleaseTraffic(model, owner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.owner == owner {
		f.owner = ""
	}
}

func (f *fakeServer) SetRouting(owner, model string, split map[string]int, shadow *router.Shadow) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.owner != owner {
		return fmt.Errorf("held by %q: %w", f.owner, serving.ErrConflict)
	}
	for v := range split {
		if f.removed[v] {
			return fmt.Errorf("split names removed version %s", v)
		}
	}
	f.split, f.shadow = maps.Clone(split), shadow
	f.moves++
	return nil
}

func (f *fakeServer) Traffic(model string) (serving.TrafficView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var v serving.TrafficView
	v.Traffic.Split = maps.Clone(f.split)
	for ver, w := range f.split {
		v.Arms = append(v.Arms, serving.ArmView{Version: ver, Weight: w, Ready: true, Percent: float64(w)})
	}
	return v, nil
}

func (f *fakeServer) ModelReady(model, version string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed[version] {
		return false, serving.ErrVersionNotFound
	}
	return slices.Contains(f.ready, version), nil
}

func (f *fakeServer) ModelMetadata(model, version string) (serving.ModelMetadata, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return serving.ModelMetadata{Name: model, Versions: slices.Clone(f.ready)}, nil
}

func (f *fakeServer) VersionShadow(model, version string) (serving.ShadowCounts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shadows[version], nil
}

func (f *fakeServer) Accuracy(model, version string, since time.Time) (int64, int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accuracy[version]
	return a[0], a[1], !f.noAcc
}

// OutputDrift reports the drift the test set; a version without an entry
// has no drift signal.
func (f *fakeServer) OutputDrift(model, version string) (OutputDrift, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.drift[version]
	return d, ok
}

// memStore is a Store in memory.
type memStore struct {
	mu    sync.Mutex
	saved map[string]Status
}

func (s *memStore) Load(model string) (Status, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.saved[model]
	return st, ok, nil
}

func (s *memStore) Save(st Status) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saved[st.Model] = st.clone()
	return nil
}

// harness is a Manager over a fake server with a clock the test moves.
type harness struct {
	t     *testing.T
	f     *fakeServer
	store *memStore
	meter *Meter
	mg    *Manager
	reg   *prometheus.Registry
	now   time.Time
}

func newHarness(t *testing.T, f *fakeServer, withSignals bool) *harness {
	h := &harness{t: t, f: f, store: &memStore{saved: map[string]Status{}}, meter: NewMeter(), reg: prometheus.NewRegistry(),
		now: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)}
	h.restart(withSignals)
	return h
}

// restart builds a new Manager over the same server and store, as a
// process restart does; withSignals plugs in the accuracy and drift
// signals.
func (h *harness) restart(withSignals bool) {
	h.reg = prometheus.NewRegistry()
	m, err := NewMetrics(h.reg)
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := Config{Routing: h.f, Versions: h.f, Shadows: h.f, Store: h.store}
	if withSignals {
		cfg.Accuracy, cfg.Drift = h.f, h.f
	}
	h.meter = NewMeter()
	h.mg = NewManager(cfg, h.meter, zap.NewNop(), m)
	h.mg.now = func() time.Time { return h.now }
}

// serve feeds n answered requests of version v to the meter, errs of them
// errors, each taking d.
func (h *harness) serve(v string, n, errs int, d time.Duration) {
	for i := range n {
		h.meter.Consume(observation{key: versionKey{"m", v}, err: i < errs, latency: d})
	}
}

func (h *harness) phase() Phase { return h.mg.Status("m").Phase }

func share(v float64) *float64 { return &v }

func policy() Policy {
	return Policy{Steps: []int{10, 50, 100}, StepInterval: time.Minute, MinRequests: 100, Gates: Gates{MaxErrorRate: share(0.01)}}
}

func TestRejectingCandidateRolledBackOnceMinRequests(t *testing.T) {
	f := newFake("1", "2")
	h := newHarness(t, f, false)
	st, err := h.mg.Start("m", "2", "", policy())
	if err != nil {
		t.Fatal(err)
	}
	if st.Baseline != "1" || st.Phase != PhaseProgressing || st.Percent() != 10 {
		t.Fatalf("started %+v", st)
	}
	if !maps.Equal(f.split, map[string]int{"1": 90, "2": 10}) {
		t.Fatalf("split %v, want 1:90 2:10", f.split)
	}
	h.serve("2", 99, 5, time.Millisecond)
	h.serve("1", 900, 0, time.Millisecond)
	h.mg.judgeAll()
	if h.phase() != PhaseProgressing {
		t.Fatalf("judged before min_requests: %s", h.phase())
	}
	h.serve("2", 1, 0, time.Millisecond)
	h.mg.judgeAll()
	got := h.mg.Status("m")
	if got.Phase != PhaseRolledBack || got.History[len(got.History)-1].Reason != "max_error_rate" {
		t.Fatalf("after min_requests: %s (%s), want rolled_back by max_error_rate", got.Phase, got.Reason)
	}
	if !maps.Equal(f.split, map[string]int{"1": 100, "2": 0}) || f.owner != "" {
		t.Errorf("after the rollback: split %v, owner %q; want 1:100 2:0 and the traffic released", f.split, f.owner)
	}
	if v := testutil.ToFloat64(h.mg.metrics.transitions.WithLabelValues("m", "progressing", "rolled_back", "max_error_rate")); v != 1 {
		t.Errorf("transitions counter %v, want 1", v)
	}
	if v := testutil.ToFloat64(h.mg.metrics.percent.WithLabelValues("m", "1")); v != 100 {
		t.Errorf("baseline percent %v, want 100", v)
	}
}

func TestGoodCandidateWalksEveryStep(t *testing.T) {
	f := newFake("1", "2")
	h := newHarness(t, f, false)
	p := policy()
	p.Gates.MaxErrorRateDelta = share(0.01)
	p.Gates.MaxP99Ratio = share(1.5)
	if _, err := h.mg.Start("m", "2", "", p); err != nil {
		t.Fatal(err)
	}
	for _, pct := range []int{10, 50, 100} {
		if got := h.mg.Status("m"); got.Phase != PhaseProgressing || got.Percent() != pct {
			t.Fatalf("at %d%%: %s %d%%", pct, got.Phase, got.Percent())
		}
		h.serve("2", 100, 0, time.Millisecond)
		h.serve("1", 100, 0, time.Millisecond)
		h.mg.judgeAll()
		if got := h.mg.Status("m"); got.Percent() != pct {
			t.Fatalf("moved on at %d%% before step_interval", pct)
		}
		h.now = h.now.Add(time.Minute)
		h.mg.judgeAll()
	}
	got := h.mg.Status("m")
	if got.Phase != PhasePromoted {
		t.Fatalf("after every step: %s (%s)", got.Phase, got.Reason)
	}
	if f.split != nil {
		t.Errorf("promoted newest version: split %v, want none (the newest takes all)", f.split)
	}
	last := got.History[len(got.History)-1]
	for _, g := range last.Gates {
		if g.Name == "max_p99_ratio" && (g.Judged || g.Note != noteNoBaseline) {
			t.Errorf("at 100%% the p99 ratio was %+v, want not judged", g)
		}
	}
}

func TestSlowCandidateFailsP99(t *testing.T) {
	f := newFake("1", "2")
	h := newHarness(t, f, false)
	p := policy()
	p.Gates = Gates{MaxP99Ratio: share(1.5)}
	if _, err := h.mg.Start("m", "2", "", p); err != nil {
		t.Fatal(err)
	}
	h.serve("2", 100, 0, 4*time.Millisecond)
	h.serve("1", 10, 0, 2*time.Millisecond) // fewer than min_requests/4: not judged yet
	h.mg.judgeAll()
	if h.phase() != PhaseProgressing {
		t.Fatalf("judged the ratio on too few baseline requests: %s", h.phase())
	}
	h.serve("1", 100, 0, 2*time.Millisecond)
	h.mg.judgeAll()
	got := h.mg.Status("m")
	if got.Phase != PhaseRolledBack || !strings.Contains(got.Reason, "max_p99_ratio") {
		t.Fatalf("%s (%s), want rolled_back by max_p99_ratio", got.Phase, got.Reason)
	}
	if g := got.Gates[0]; g.Value < 1.8 || g.Value > 2.2 {
		t.Errorf("p99 ratio %v, want about 2", g.Value)
	}
}

func TestHoldThenOperator(t *testing.T) {
	f := newFake("1", "2", "3")
	h := newHarness(t, f, false)
	p := policy()
	p.HoldOnFailure = true
	if _, err := h.mg.Start("m", "2", "1", p); err != nil {
		t.Fatal(err)
	}
	if _, err := h.mg.Start("m", "3", "", p); !errors.Is(err, serving.ErrConflict) {
		t.Errorf("second rollout: %v, want ErrConflict", err)
	}
	h.serve("2", 100, 50, time.Millisecond)
	h.mg.judgeAll()
	if got := h.mg.Status("m"); got.Phase != PhaseHeld || !maps.Equal(f.split, map[string]int{"1": 90, "2": 10}) || f.owner == "" {
		t.Fatalf("held: %s split %v owner %q", got.Phase, f.split, f.owner)
	}
	st, err := h.mg.Promote("m")
	if err != nil || st.Phase != PhasePromoted {
		t.Fatalf("promote: %v %s", err, st.Phase)
	}
	if !maps.Equal(f.split, map[string]int{"2": 1}) {
		t.Errorf("promoted a version older than the newest: split %v, want 2 alone", f.split)
	}
	if _, err := h.mg.Abort("m"); !errors.Is(err, serving.ErrConflict) {
		t.Errorf("abort after the end: %v, want ErrConflict", err)
	}
	if _, err := h.mg.Start("m", "3", "2", policy()); err != nil {
		t.Fatalf("a new rollout after the last ended: %v", err)
	}
	if st, err := h.mg.Abort("m"); err != nil || st.Phase != PhaseRolledBack || !maps.Equal(f.split, map[string]int{"2": 100, "3": 0}) {
		t.Errorf("abort: %v %s split %v", err, st.Phase, f.split)
	}
}

func TestShadowFirst(t *testing.T) {
	for _, c := range []struct {
		name   string
		agreed int64
		want   Phase
	}{{"agrees", 99, PhaseProgressing}, {"disagrees", 80, PhaseRolledBack}} {
		t.Run(c.name, func(t *testing.T) {
			f := newFake("1", "2")
			h := newHarness(t, f, false)
			p := policy()
			p.ShadowFirst = time.Minute
			p.Gates.MinShadowAgreement = share(0.95)
			if _, err := h.mg.Start("m", "2", "", p); err != nil {
				t.Fatal(err)
			}
			if h.phase() != PhaseShadow || f.shadow == nil || f.shadow.Version != 2 || f.shadow.Percent != 100 || !maps.Equal(f.split, map[string]int{"1": 100, "2": 0}) {
				t.Fatalf("shadow phase: %s shadow %+v split %v", h.phase(), f.shadow, f.split)
			}
			f.shadows["2"] = serving.ShadowCounts{Agreed: c.agreed, Disagreed: 100 - c.agreed}
			h.now = h.now.Add(time.Minute)
			h.mg.judgeAll()
			if h.phase() != c.want {
				t.Fatalf("%s, want %s", h.phase(), c.want)
			}
			if f.shadow != nil {
				t.Errorf("the shadow stays on after the shadow phase: %+v", f.shadow)
			}
		})
	}
}

func TestAccuracyGate(t *testing.T) {
	f := newFake("1", "2")
	h := newHarness(t, f, false)
	p := policy()
	p.Gates.MaxAccuracyDrop = share(0.02)
	if _, err := h.mg.Start("m", "2", "", p); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "gates.max_accuracy_drop") {
		t.Fatalf("without a quality signal: %v, want ErrInvalid naming the gate", err)
	}
	p.Gates.MaxDrift = share(0.2)
	if _, err := h.mg.Start("m", "2", "", p); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "gates.max_drift") {
		t.Fatalf("a drift gate: %v, want ErrInvalid naming it", err)
	}
	p.Gates.MaxDrift = nil
	h.restart(true)
	f.noAcc = true
	if _, err := h.mg.Start("m", "2", "", p); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a model without monitoring: %v, want ErrInvalid", err)
	}
	f.noAcc = false
	if _, err := h.mg.Start("m", "2", "", p); err != nil {
		t.Fatal(err)
	}
	h.serve("2", 100, 0, time.Millisecond)
	h.serve("1", 100, 0, time.Millisecond)
	f.accuracy["1"] = [2]int64{90, 100}
	f.accuracy["2"] = [2]int64{80, 100}
	h.mg.judgeAll()
	got := h.mg.Status("m")
	if got.Phase != PhaseRolledBack || !strings.Contains(got.Reason, "max_accuracy_drop") {
		t.Fatalf("%s (%s), want rolled back by max_accuracy_drop", got.Phase, got.Reason)
	}
}

func TestDriftGate(t *testing.T) {
	f := newFake("1", "2")
	h := newHarness(t, f, true)
	p := policy()
	p.Gates.MaxDrift = share(0.2)
	if _, err := h.mg.Start("m", "2", "", p); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "gates.max_drift") {
		t.Fatalf("a candidate without a drift signal: %v, want ErrInvalid naming the gate", err)
	}
	f.drift["2"] = OutputDrift{Note: "the drift reference is still being learned"}
	if _, err := h.mg.Start("m", "2", "", p); err != nil {
		t.Fatal(err)
	}
	gate := func() Gate {
		t.Helper()
		for _, g := range h.mg.Status("m").Gates {
			if g.Name == "max_drift" {
				return g
			}
		}
		t.Fatalf("no max_drift gate in %+v", h.mg.Status("m").Gates)
		return Gate{}
	}
	h.serve("2", 100, 0, time.Millisecond)
	h.serve("1", 100, 0, time.Millisecond)
	h.now = h.now.Add(time.Minute)
	h.mg.judgeAll()
	if g := gate(); g.Judged || g.Note != f.drift["2"].Note || h.mg.Status("m").Step != 0 {
		t.Fatalf("learning reference: gate %+v step %d; want not judged, waiting at step 0", g, h.mg.Status("m").Step)
	}
	f.drift["2"] = OutputDrift{Value: 0.9, Rows: 10}
	h.mg.judgeAll()
	if g := gate(); g.Judged || !strings.Contains(g.Note, "10 of 25") || h.phase() != PhaseProgressing {
		t.Fatalf("10 rows: gate %+v phase %s; want not judged yet", g, h.phase())
	}
	f.drift["2"] = OutputDrift{Value: 0.05, Rows: 500}
	h.mg.judgeAll()
	if got := h.mg.Status("m"); got.Step != 1 || got.Percent() != 50 {
		t.Fatalf("low drift: step %d at %d%%; want step 1 at 50%%", got.Step, got.Percent())
	}
	h.serve("2", 100, 0, time.Millisecond)
	f.drift["2"] = OutputDrift{Value: 0.35, Rows: 600}
	h.mg.judgeAll()
	got := h.mg.Status("m")
	if got.Phase != PhaseRolledBack || !strings.Contains(got.Reason, "max_drift") || !maps.Equal(f.split, map[string]int{"1": 100, "2": 0}) {
		t.Fatalf("%s (%s) split %v, want rolled back by max_drift", got.Phase, got.Reason, f.split)
	}
}

func TestResumeAfterRestart(t *testing.T) {
	f := newFake("1", "2")
	h := newHarness(t, f, false)
	if _, err := h.mg.Start("m", "2", "", policy()); err != nil {
		t.Fatal(err)
	}
	h.serve("2", 100, 0, time.Millisecond)
	h.now = h.now.Add(time.Minute)
	h.mg.judgeAll()
	h.serve("2", 60, 0, time.Millisecond)
	f.owner = "" // the claim lives in the process, not on disk
	h.restart(false)
	h.now = h.now.Add(time.Second)
	h.mg.Resume([]string{"m", "other"})
	got := h.mg.Status("m")
	if got.Phase != PhaseProgressing || got.Step != 1 || got.Percent() != 50 || !got.StepStarted.Equal(h.now) || got.Window.CandidateRequests != 0 {
		t.Fatalf("resumed %s step %d %d%% started %v window %+v", got.Phase, got.Step, got.Percent(), got.StepStarted, got.Window)
	}
	if got.History[len(got.History)-1].Reason != "resumed" || f.owner == "" {
		t.Errorf("last decision %q, owner %q; want resumed and the traffic held", got.History[len(got.History)-1].Reason, f.owner)
	}
	if v := testutil.ToFloat64(h.mg.metrics.state.WithLabelValues("m", "progressing")); v != 1 {
		t.Errorf("state gauge after resume %v", v)
	}
	f.removed["2"] = true
	h.mg.judgeAll()
	got = h.mg.Status("m")
	if got.Phase != PhaseRolledBack || got.History[len(got.History)-1].Reason != "candidate_removed" || !maps.Equal(f.split, map[string]int{"1": 100}) {
		t.Errorf("candidate removed: %s %v split %v", got.Phase, got.History[len(got.History)-1].Reason, f.split)
	}
}

func TestStartRefusals(t *testing.T) {
	f := newFake("1", "2")
	h := newHarness(t, f, false)
	for _, c := range []struct {
		name, cand, base string
		p                Policy
		want             string
	}{
		{"candidate not loaded", "7", "", policy(), "candidate: version 7"},
		{"baseline not loaded", "2", "9", policy(), "baseline: version 9"},
		{"baseline is candidate", "2", "2", policy(), "baseline: must differ"},
		{"steps not ending at 100", "2", "", Policy{Steps: []int{10, 50}, StepInterval: time.Second, MinRequests: 1}, "steps"},
		{"steps not increasing", "2", "", Policy{Steps: []int{50, 10, 100}, StepInterval: time.Second, MinRequests: 1}, "steps[1]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.mg.Start("m", c.cand, c.base, c.p)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v, want ErrInvalid naming %q", err, c.want)
			}
		})
	}
	if f.moves != 0 || f.owner != "" || h.phase() != PhaseIdle {
		t.Errorf("a refused start changed something: %d moves, owner %q, %s", f.moves, f.owner, h.phase())
	}
	one := newFake("1")
	h = newHarness(t, one, false)
	if _, err := h.mg.Start("m", "1", "", policy()); !errors.Is(err, ErrInvalid) {
		t.Errorf("no baseline besides the candidate: %v", err)
	}
}

func TestFileStore(t *testing.T) {
	dir := t.TempDir()
	s := InFolder(dir)
	if _, ok, err := s.Load("m"); ok || err != nil {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	st := Status{Model: "m", Candidate: "2", Baseline: "1", Phase: PhaseProgressing, Step: 1, Policy: policy(),
		Weights: map[string]int{"1": 50, "2": 50}}
	for range maxHistory + 10 {
		st.History = appendBounded(st.History, Decision{Reason: "passed", Detail: strings.Repeat("x", 100)})
	}
	if len(st.History) != maxHistory {
		t.Fatalf("history of %d, want %d", len(st.History), maxHistory)
	}
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Load("m")
	if err != nil || !ok || got.Step != 1 || got.Percent() != 50 || len(got.History) != maxHistory {
		t.Fatalf("loaded %+v %v %v", got, ok, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "m.rollout.json")); fi.Size() > MaxStateBytes/8 {
		t.Errorf("a full state file is %d bytes", fi.Size())
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.rollout.json"), []byte(`{"model":"bad","phase":"progressing","policy":{"steps":[10]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load("bad"); err == nil {
		t.Error("a state file with an impossible policy loaded")
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".rollout-*")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestHistogramQuantile(t *testing.T) {
	var h histogram
	if h.quantile(0.99) != 0 {
		t.Error("empty histogram has a p99")
	}
	for i := range 1000 {
		d := time.Millisecond
		if i >= 985 {
			d = 100 * time.Millisecond
		}
		h[bucketOf(d)]++
	}
	p99 := h.quantile(0.99)
	if p99 < 100*time.Millisecond || p99 > 110*time.Millisecond {
		t.Errorf("p99 %v, want about 100ms", p99)
	}
	if p50 := h.quantile(0.5); p50 < time.Millisecond || p50 > 1100*time.Microsecond {
		t.Errorf("p50 %v, want about 1ms", p50)
	}
	if bucketOf(time.Hour*1000) != latencyBuckets-1 || bucketOf(0) != 0 {
		t.Error("bucketOf does not clamp")
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestRunStartsLater: a start asked for with StartLater happens on Run's
// goroutine, which ends with its context.
func TestRunStartsLater(t *testing.T) {
	f := newFake("1", "2")
	h := newHarness(t, f, false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.mg.Run(ctx) }()
	h.mg.StartLater("m", "2", "1", policy())
	deadline := time.After(testTimeout)
	for h.phase() != PhaseProgressing {
		select {
		case <-deadline:
			t.Fatal("the later start never happened")
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
	}
}

const testTimeout = 10 * time.Second
