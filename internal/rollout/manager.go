package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/router"
	"github.com/onnxserve/onnxserve/internal/serving"
)

// Routing moves a model's traffic; *serving.Server satisfies it. The
// rollout claims a model's traffic while it runs, so no one else changes it.
type Routing interface {
	ClaimTraffic(model, owner string) error
	ReleaseTraffic(model, owner string)
	// SetRouting persists and applies a split (version → weight) and
	// shadow on behalf of owner.
	SetRouting(owner, model string, split map[string]int, shadow *router.Shadow) error
	Traffic(model string) (serving.TrafficView, error)
}

// Versions tells which versions of a model serve; *serving.Server
// satisfies it.
type Versions interface {
	// ModelReady reports whether a version can serve; an error wrapping
	// serving.ErrVersionNotFound means it left the repository.
	ModelReady(model, version string) (bool, error)
	// ModelMetadata lists the ready versions (version "").
	ModelMetadata(model, version string) (serving.ModelMetadata, error)
}

// Shadows reads a version's mirrored-request outcomes; *serving.Server
// satisfies it.
type Shadows interface {
	VersionShadow(model, version string) (serving.ShadowCounts, error)
}

// Accuracy is the quality signal: how many of a version's predictions
// made since a time have been labelled by feedback, and how many of those
// were right. ok is false when the model has no such signal (no feedback
// monitoring). cmd/serve plugs the quality package in; nil means no model
// has one. It may read a store: it is called once per judgement.
type Accuracy interface {
	Accuracy(model, version string, since time.Time) (correct, labelled int64, ok bool)
}

// Drift is the drift signal: how far a version's outputs have moved from
// its reference. ok is false when the version has no such signal (no
// drift block, or a reference profile that covers no output). cmd/serve
// plugs the drift package in; nil means no model has one. It is called
// once per judgement.
type Drift interface {
	OutputDrift(model, version string) (d OutputDrift, ok bool)
}

// OutputDrift is a version's output drift over its drift window.
type OutputDrift struct {
	// Value is the largest drift statistic (the drift block's alert
	// statistic) over the version's output features.
	Value float64
	// Rows is the sampled rows the window holds.
	Rows int64
	// Note, when not empty, says why there is no value yet (the
	// reference is still being learned).
	Note string
}

// Store keeps each model's rollout across restarts.
type Store interface {
	// Load returns the model's saved rollout; ok false when there is none.
	Load(model string) (st Status, ok bool, err error)
	// Save replaces the model's saved rollout, crash-safely.
	Save(st Status) error
}

// Config holds a Manager's settings and collaborators.
type Config struct {
	Routing  Routing
	Versions Versions
	Shadows  Shadows
	// Accuracy, when not nil, enables the max_accuracy_drop gate.
	Accuracy Accuracy
	// Drift, when not nil, enables the max_drift gate.
	Drift Drift
	Store Store
	// Tick is how often running rollouts are judged. [1s]
	Tick time.Duration
}

// DefaultTick is Config.Tick's default.
const DefaultTick = time.Second

// maxHistory bounds the decisions a rollout keeps (and persists).
const maxHistory = 64

// Manager runs the rollouts of every model: at most one at a time per
// model. Safe for concurrent use; Run judges them until its context ends.
type Manager struct {
	cfg     Config
	meter   *Meter
	log     *zap.Logger
	metrics *Metrics
	now     func() time.Time

	mu   sync.Mutex // guards runs and each run's fields
	runs map[string]*run

	// auto queues the rollouts that new version folders start, for Run.
	auto chan autoStart
}

// autoStart is a rollout a new version folder asked for.
type autoStart struct {
	model, candidate, baseline string
	policy                     Policy
}

// maxAutoQueue bounds the automatic starts waiting for Run; beyond it one
// is dropped and logged (its version stays without traffic).
const maxAutoQueue = 64

// run is one model's rollout and its window.
type run struct {
	st Status
	// window start readings of the candidate and the baseline.
	candStart, baseStart Figures
	shadowStart          serving.ShadowCounts
}

// Status is a rollout as GET /v2/models/{m}/rollout shows it and as it is
// persisted. A plain value.
type Status struct {
	Model     string `json:"model"`
	Candidate string `json:"candidate"`
	Baseline  string `json:"baseline"`
	Phase     Phase  `json:"phase"`
	// Step indexes Policy.Steps while progressing; -1 in the shadow phase.
	Step int `json:"step"`
	// Weights are the split the rollout set last (version → weight).
	Weights map[string]int `json:"weights,omitempty"`
	Policy  Policy         `json:"policy"`
	// Shadow is the model's shadow before the rollout, restored after it.
	Shadow *router.Shadow `json:"original_shadow,omitempty"`
	// Started is when the rollout started; StepStarted when its current
	// window opened (a restart opens a fresh one).
	Started     time.Time `json:"started"`
	StepStarted time.Time `json:"step_started"`
	// Reason says why the rollout ended or holds.
	Reason string `json:"reason,omitempty"`
	// Gates are the latest judgement of the current window.
	Gates []Gate `json:"gates,omitempty"`
	// Window counts the current window's requests.
	Window Window `json:"window"`
	// History lists the decisions, oldest first, at most maxHistory.
	History []Decision `json:"history"`
}

// Window is the size of the current judging window.
type Window struct {
	CandidateRequests int64 `json:"candidate_requests"`
	BaselineRequests  int64 `json:"baseline_requests"`
	ShadowCompared    int64 `json:"shadow_compared,omitempty"`
}

// Gate is one gate's value against its threshold. Judged is false when
// the window cannot tell yet (too few baseline requests or labels), or
// never can (the baseline serves nothing at the 100% step).
type Gate struct {
	Name      string  `json:"name"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Judged    bool    `json:"judged"`
	Pass      bool    `json:"pass"`
	Note      string  `json:"note,omitempty"`
}

// Decision is one transition of a rollout.
type Decision struct {
	At      time.Time `json:"at"`
	From    Phase     `json:"from"`
	To      Phase     `json:"to"`
	Step    int       `json:"step"`
	Percent int       `json:"percent"`
	// Reason is a bounded keyword (started, passed, a gate's name,
	// promote, abort, candidate_removed, resumed); Detail says more.
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
	Gates  []Gate `json:"gates,omitempty"`
}

// Percent returns the candidate's current share of traffic.
func (st Status) Percent() int {
	w := st.Weights[st.Candidate]
	total := 0
	for _, x := range st.Weights {
		total += x
	}
	if total == 0 {
		return 0
	}
	return w * 100 / total
}

// owner is how the rollout names itself when it holds a model's traffic.
func (st Status) owner() string {
	return fmt.Sprintf("rollout of version %s (baseline %s)", st.Candidate, st.Baseline)
}

// NewManager returns a Manager; meter must be registered as a tap (see
// Meter.Register). log must not be nil; m may be nil.
func NewManager(cfg Config, meter *Meter, log *zap.Logger, m *Metrics) *Manager {
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	return &Manager{cfg: cfg, meter: meter, log: log, metrics: m, now: time.Now, runs: map[string]*run{},
		auto: make(chan autoStart, maxAutoQueue)}
}

// Start begins a rollout of candidate on model, judged against baseline
// ("" picks the version that serves unversioned requests now, or, when that
// is the candidate itself, the newest other ready version). It fails with
// serving.ErrConflict while another rollout of the model runs, and with
// ErrInvalid for a version that is not loaded or a gate on a signal the
// model lacks; nothing changes then.
func (mg *Manager) Start(model, candidate, baseline string, p Policy) (Status, error) {
	if err := p.check(); err != nil {
		return Status{}, err
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if r := mg.runs[model]; r != nil && r.st.Phase.running() {
		return Status{}, fmt.Errorf("model %q: the %s is %s; abort or promote it first: %w", model, r.st.owner(), r.st.Phase, serving.ErrConflict)
	}
	view, err := mg.cfg.Routing.Traffic(model)
	if err != nil {
		return Status{}, err
	}
	md, err := mg.cfg.Versions.ModelMetadata(model, "")
	if err != nil {
		return Status{}, err
	}
	ready := md.Versions // ascending
	if !slices.Contains(ready, candidate) {
		return Status{}, fmt.Errorf("%w: candidate: version %s of model %q is not loaded and ready (ready: %v)", ErrInvalid, candidate, model, ready)
	}
	if baseline == "" {
		baseline = currentBaseline(view, ready, candidate)
		if baseline == "" {
			return Status{}, fmt.Errorf("%w: baseline: model %q has no ready version besides the candidate %s", ErrInvalid, model, candidate)
		}
	} else if !slices.Contains(ready, baseline) {
		return Status{}, fmt.Errorf("%w: baseline: version %s of model %q is not loaded and ready (ready: %v)", ErrInvalid, baseline, model, ready)
	}
	if baseline == candidate {
		return Status{}, fmt.Errorf("%w: baseline: must differ from the candidate %s", ErrInvalid, candidate)
	}
	if err := mg.signalsFor(model, candidate, p.Gates); err != nil {
		return Status{}, err
	}
	now := mg.now()
	st := Status{Model: model, Candidate: candidate, Baseline: baseline, Phase: PhaseIdle, Step: -1, Policy: p, Started: now}
	if view.Shadow != nil && view.Shadow.Version != candidate {
		n, _ := strconv.ParseInt(view.Shadow.Version, 10, 64)
		st.Shadow = &router.Shadow{Version: n, Percent: view.Shadow.Percent}
	}
	if err := mg.cfg.Routing.ClaimTraffic(model, st.owner()); err != nil {
		return Status{}, err
	}
	r := &run{st: st}
	to, step := PhaseProgressing, 0
	if p.ShadowFirst > 0 {
		to, step = PhaseShadow, -1
	}
	if err := mg.enter(r, to, step, "started", fmt.Sprintf("candidate %s against baseline %s", candidate, baseline), nil); err != nil {
		mg.cfg.Routing.ReleaseTraffic(model, st.owner())
		return Status{}, err
	}
	mg.runs[model] = r
	mg.watchLocked()
	return r.st, nil
}

// currentBaseline returns the version serving unversioned requests now:
// the arm with the largest share, or the newest ready version without a
// split; when that is the candidate, the newest other ready version.
func currentBaseline(view serving.TrafficView, ready []string, candidate string) string {
	best, share := "", -1.0
	if view.Traffic.Split != nil {
		for _, a := range view.Arms {
			if a.Ready && a.Version != candidate && a.Percent > share {
				best, share = a.Version, a.Percent
			}
		}
		if best != "" {
			return best
		}
	}
	for i := len(ready) - 1; i >= 0; i-- {
		if ready[i] != candidate {
			return ready[i]
		}
	}
	return ""
}

// signalsFor refuses gates on signals the model lacks.
func (mg *Manager) signalsFor(model, candidate string, g Gates) error {
	if g.MaxDrift != nil {
		if mg.cfg.Drift == nil {
			return fmt.Errorf("%w: gates.max_drift: needs the drift signal (a drift block), which this server does not run", ErrInvalid)
		}
		if _, ok := mg.cfg.Drift.OutputDrift(model, candidate); !ok {
			return fmt.Errorf("%w: gates.max_drift: model %q version %s has no output drift signal (needs a drift block whose reference covers an output)", ErrInvalid, model, candidate)
		}
	}
	if g.MaxAccuracyDrop != nil {
		if mg.cfg.Accuracy == nil {
			return fmt.Errorf("%w: gates.max_accuracy_drop: needs the quality signal (feedback monitoring), which this server does not run", ErrInvalid)
		}
		if _, _, ok := mg.cfg.Accuracy.Accuracy(model, candidate, mg.now()); !ok {
			return fmt.Errorf("%w: gates.max_accuracy_drop: model %q has no quality signal (no feedback monitoring)", ErrInvalid, model)
		}
	}
	return nil
}

// Status returns a model's rollout; the phase is idle when it never had one.
func (mg *Manager) Status(model string) Status {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if r := mg.runs[model]; r != nil {
		return r.st.clone()
	}
	return Status{Model: model, Phase: PhaseIdle, Step: -1, History: []Decision{}}
}

// clone copies what a caller could change or what changes under it.
func (st Status) clone() Status {
	out := st
	out.Weights = make(map[string]int, len(st.Weights))
	for k, v := range st.Weights {
		out.Weights[k] = v
	}
	out.Gates = slices.Clone(st.Gates)
	out.History = slices.Clone(st.History)
	if out.History == nil {
		out.History = []Decision{}
	}
	return out
}

// Promote gives the candidate all traffic at once and ends the rollout.
func (mg *Manager) Promote(model string) (Status, error) {
	return mg.operator(model, PhasePromoted, "promote")
}

// Abort ends the rollout: the baseline takes all traffic back.
func (mg *Manager) Abort(model string) (Status, error) {
	return mg.operator(model, PhaseRolledBack, "abort")
}

func (mg *Manager) operator(model string, to Phase, reason string) (Status, error) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	r := mg.runs[model]
	if r == nil || !r.st.Phase.running() {
		return Status{}, fmt.Errorf("model %q: no rollout is running: %w", model, serving.ErrConflict)
	}
	if err := mg.enter(r, to, r.st.Step, reason, "by the operator", nil); err != nil {
		return Status{}, err
	}
	return r.st.clone(), nil
}

// Resume picks up the saved rollouts of models that were running when the
// server stopped: each resumes its step with a fresh window. A saved
// rollout whose candidate is gone ends as rolled back at the next judgement.
func (mg *Manager) Resume(models []string) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	for _, model := range models {
		st, ok, err := mg.cfg.Store.Load(model)
		if err != nil {
			mg.log.Warn("rollout state unreadable; ignored", zap.String("model", model), zap.Error(err))
			continue
		}
		if !ok {
			continue
		}
		r := &run{st: st}
		mg.runs[model] = r
		mg.metrics.set(st)
		if !st.Phase.running() {
			continue
		}
		if err := mg.cfg.Routing.ClaimTraffic(model, st.owner()); err != nil {
			mg.log.Warn("rollout resumed without holding the traffic", zap.String("model", model), zap.Error(err))
		}
		mg.openWindow(r)
		r.st.History = appendBounded(r.st.History, Decision{At: r.st.StepStarted, From: st.Phase, To: st.Phase, Step: st.Step,
			Percent: st.Percent(), Reason: "resumed", Detail: "the server restarted; the step's window starts afresh"})
		if err := mg.cfg.Store.Save(r.st); err != nil {
			mg.log.Warn("rollout state not saved", zap.String("model", model), zap.Error(err))
		}
		mg.log.Info("rollout resumed", zap.String("model", model), zap.String("candidate", st.Candidate),
			zap.String("baseline", st.Baseline), zap.String("phase", string(st.Phase)), zap.Int("percent", st.Percent()))
	}
	mg.watchLocked()
}

// Run judges the running rollouts every tick until ctx ends.
func (mg *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(mg.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			mg.judgeAll()
		case a := <-mg.auto:
			if _, err := mg.Start(a.model, a.candidate, a.baseline, a.policy); err != nil {
				mg.log.Error("automatic rollout not started; the new version serves no unversioned traffic",
					zap.String("model", a.model), zap.String("candidate", a.candidate), zap.Error(err))
			}
		}
	}
}

// StartLater asks Run to start a rollout, as Start would; it never blocks.
// The serving core calls it (through cmd/serve) when a new version folder
// arrives on a model whose rollout policy is automatic.
func (mg *Manager) StartLater(model, candidate, baseline string, p Policy) {
	select {
	case mg.auto <- autoStart{model, candidate, baseline, p}:
	default:
		mg.log.Error("automatic rollout dropped: too many waiting", zap.String("model", model), zap.String("candidate", candidate))
	}
}

// judgeAll judges every running rollout once.
func (mg *Manager) judgeAll() {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	for _, r := range mg.runs {
		if r.st.Phase == PhaseShadow || r.st.Phase == PhaseProgressing {
			mg.judge(r)
		}
	}
}

// watchLocked tells the meter which models to count.
func (mg *Manager) watchLocked() {
	var models []string
	for name, r := range mg.runs {
		if r.st.Phase.running() {
			models = append(models, name)
		}
	}
	mg.meter.watch(models)
}

// openWindow starts a fresh judging window from the current readings.
func (mg *Manager) openWindow(r *run) {
	st := &r.st
	st.StepStarted = mg.now()
	st.Gates = nil
	st.Window = Window{}
	r.candStart = mg.meter.Figures(st.Model, st.Candidate)
	r.baseStart = mg.meter.Figures(st.Model, st.Baseline)
	r.shadowStart, _ = mg.cfg.Shadows.VersionShadow(st.Model, st.Candidate)
}

// weights returns the split of a phase and step.
func weights(st *Status, to Phase, step int) map[string]int {
	switch to {
	case PhaseProgressing:
		p := st.Policy.Steps[step]
		return map[string]int{st.Baseline: 100 - p, st.Candidate: p}
	case PhasePromoted:
		return map[string]int{st.Baseline: 0, st.Candidate: 100}
	case PhaseHeld:
		return st.Weights
	}
	return map[string]int{st.Baseline: 100, st.Candidate: 0}
}

// enter moves r to phase to at step, moving traffic first: when that
// fails, nothing changes and the error is returned.
func (mg *Manager) enter(r *run, to Phase, step int, reason, detail string, gates []Gate) error {
	st := &r.st
	from := st.Phase
	w := weights(st, to, step)
	split, shadow := w, st.Shadow
	switch to {
	case PhaseShadow:
		shadow = &router.Shadow{Version: mustVersion(st.Candidate), Percent: 100}
	case PhaseRolledBack:
		if _, err := mg.cfg.Versions.ModelReady(st.Model, st.Candidate); errors.Is(err, serving.ErrVersionNotFound) {
			split = map[string]int{st.Baseline: 100} // a split may name only versions the model has
		}
	case PhasePromoted:
		split = map[string]int{st.Candidate: 1}
		if mg.newest(st.Model) == st.Candidate {
			split = nil // the newest takes all: later versions roll out in turn
		}
	}
	if to != PhaseHeld {
		if err := mg.cfg.Routing.SetRouting(st.owner(), st.Model, split, shadow); err != nil {
			return fmt.Errorf("model %q: move traffic: %w", st.Model, err)
		}
	}
	st.Phase, st.Step, st.Weights = to, step, w
	if !to.running() || to == PhaseHeld {
		st.Reason = detail
	} else {
		st.Reason = ""
	}
	d := Decision{At: mg.now(), From: from, To: to, Step: step, Percent: st.Percent(), Reason: reason, Detail: detail, Gates: gates}
	st.History = appendBounded(st.History, d)
	if to == PhaseShadow || to == PhaseProgressing {
		mg.openWindow(r)
	}
	if !to.running() {
		mg.cfg.Routing.ReleaseTraffic(st.Model, st.owner())
	}
	if err := mg.cfg.Store.Save(*st); err != nil {
		mg.log.Warn("rollout state not saved", zap.String("model", st.Model), zap.Error(err))
	}
	mg.metrics.transition(*st, from, to, reason)
	fields := []zap.Field{zap.String("model", st.Model), zap.String("candidate", st.Candidate), zap.String("baseline", st.Baseline),
		zap.String("from", string(from)), zap.String("to", string(to)), zap.Int("percent", d.Percent),
		zap.String("reason", reason), zap.String("detail", detail)}
	for _, g := range gates {
		fields = append(fields, zap.String("gate."+g.Name, g.describe()))
	}
	mg.log.Info("rollout decision", fields...)
	if !to.running() {
		mg.watchLocked()
		mg.meter.forget(st.Model)
	}
	return nil
}

func (g Gate) describe() string {
	switch {
	case !g.Judged:
		return fmt.Sprintf("not judged (%s)", g.Note)
	case g.Pass:
		return fmt.Sprintf("%.4g within %.4g", g.Value, g.Threshold)
	}
	return fmt.Sprintf("%.4g beyond %.4g", g.Value, g.Threshold)
}

// newest returns the newest ready version of model, "" when unknown.
func (mg *Manager) newest(model string) string {
	md, err := mg.cfg.Versions.ModelMetadata(model, "")
	if err != nil || len(md.Versions) == 0 {
		return ""
	}
	return md.Versions[len(md.Versions)-1]
}

func mustVersion(v string) int64 {
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

func appendBounded(h []Decision, d Decision) []Decision {
	h = append(h, d)
	if len(h) > maxHistory {
		h = slices.Delete(h, 0, len(h)-maxHistory)
	}
	return h
}

// judge decides one running rollout's current window: a failed gate ends
// or holds it at once; a step that passed every gate and lasted its
// interval moves on. mg.mu is held.
func (mg *Manager) judge(r *run) {
	st := &r.st
	if ok, err := mg.cfg.Versions.ModelReady(st.Model, st.Candidate); err != nil {
		if errors.Is(err, serving.ErrVersionNotFound) || errors.Is(err, serving.ErrModelNotFound) {
			mg.endRemoved(r, fmt.Sprintf("candidate version %s was removed from the repository", st.Candidate))
		}
		return
	} else if !ok {
		return // loading or reloading: judge when it serves again
	}
	gates, ready := mg.evaluate(r)
	st.Gates = gates
	for _, g := range gates {
		if g.Judged && !g.Pass {
			mg.fail(r, g, gates)
			return
		}
	}
	if !ready || mg.now().Sub(st.StepStarted) < mg.stepTime(st) {
		return
	}
	for _, g := range gates {
		if !g.Judged && g.Note != noteNoBaseline {
			return // waiting for enough baseline requests or labels
		}
	}
	mg.pass(r, gates)
}

// stepTime is the least time of the current phase.
func (mg *Manager) stepTime(st *Status) time.Duration {
	if st.Phase == PhaseShadow {
		return st.Policy.ShadowFirst
	}
	return st.Policy.StepInterval
}

func (mg *Manager) pass(r *run, gates []Gate) {
	st := &r.st
	next := st.Step + 1
	var err error
	switch {
	case next < len(st.Policy.Steps):
		err = mg.enter(r, PhaseProgressing, next, "passed", fmt.Sprintf("step to %d%%", st.Policy.Steps[next]), gates)
	case st.Policy.HoldOnSuccess:
		err = mg.enter(r, PhaseHeld, st.Step, "passed", "every step passed; waiting for promote", gates)
	default:
		err = mg.enter(r, PhasePromoted, st.Step, "passed", "every step passed", gates)
	}
	if err != nil {
		mg.log.Warn("rollout could not move on; retrying", zap.String("model", st.Model), zap.Error(err))
	}
}

func (mg *Manager) fail(r *run, g Gate, gates []Gate) {
	st := &r.st
	detail := fmt.Sprintf("gate %s failed: %s", g.Name, g.describe())
	to := PhaseRolledBack
	if st.Policy.HoldOnFailure {
		to = PhaseHeld
	}
	if err := mg.enter(r, to, st.Step, g.Name, detail, gates); err != nil {
		mg.log.Warn("rollout could not roll back; retrying", zap.String("model", st.Model), zap.Error(err))
	}
}

func (mg *Manager) endRemoved(r *run, detail string) {
	st := &r.st
	// The candidate cannot take traffic any more; the baseline takes all.
	if err := mg.enter(r, PhaseRolledBack, st.Step, "candidate_removed", detail, nil); err != nil {
		mg.log.Warn("rollout could not roll back; retrying", zap.String("model", st.Model), zap.Error(err))
	}
}
