package serving

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Desired is the state one model should reach: its config (or the error
// reading it) and the versions its policy selects.
type Desired struct {
	Name      string
	Config    repository.Config
	ConfigErr error
	// ConfigHash changes whenever config.yaml changes; a version whose
	// config changed is reloaded like one whose file changed.
	ConfigHash string
	Versions   []DesiredVersion
}

// DesiredVersion is one version file to serve.
type DesiredVersion struct {
	Number int64
	Path   string
	// Fingerprint identifies the file's content (size and mtime); a changed
	// fingerprint reloads the version.
	Fingerprint string
	// Err is set when the version cannot be loaded at all (a path escaping
	// the repository, say); it is reported UNAVAILABLE with this reason.
	Err error
}

// Apply makes the live set match want: models absent from want are unloaded,
// the others are reconciled one by one. A model that fails to load never
// disturbs the others. Startup is simply the first Apply.
func (s *Server) Apply(ctx context.Context, want []Desired) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return
	}
	keep := make(map[string]bool, len(want))
	for _, d := range want {
		keep[d.Name] = true
		s.applyModel(ctx, d)
	}
	for name := range *s.models.Load() {
		if !keep[name] {
			s.removeModel(name)
		}
	}
}

// ApplyModel reconciles a single model, leaving the others alone (the
// explicit load API).
func (s *Server) ApplyModel(ctx context.Context, d Desired) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return ErrShuttingDown
	}
	s.applyModel(ctx, d)
	m, _ := s.model(d.Name)
	if m == nil {
		return fmt.Errorf("model %q: %w", d.Name, ErrModelNotFound)
	}
	m.mu.Lock()
	reason := m.reason
	m.mu.Unlock()
	if len(m.serving.Load().ready) == 0 {
		if reason == "" {
			reason = firstReason(m)
		}
		return fmt.Errorf("model %q: no version loaded: %s: %w", d.Name, reason, ErrNotReady)
	}
	return nil
}

// Unload retires every version of a model and returns once they are
// released (their requests answered, sessions freed); the model stays listed
// in the index as UNAVAILABLE until loaded again.
func (s *Server) Unload(name string) error {
	s.mu.Lock()
	m, err := s.model(name)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	old := m.serving.Swap(newServingSet(nil, m.trafficSpec()))
	var released []<-chan struct{}
	for _, v := range old.byNumber {
		released = append(released, s.retire(m, v, retireUnloaded))
	}
	defer func() {
		for _, ch := range released {
			<-ch
		}
	}()
	defer s.mu.Unlock()
	for n, st := range m.loaded(old).listed {
		if st != StateUnloading {
			s.moveState(m, n, st, StateUnavailable, "unloaded")
		}
	}
	return nil
}

func firstReason(m *model) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries {
		if e.Reason != "" {
			return e.Reason
		}
	}
	return "no version selected by the version policy"
}

func (s *Server) removeModel(name string) {
	m, err := s.model(name)
	if err != nil {
		return
	}
	old := m.serving.Swap(newServingSet(nil, m.trafficSpec()))
	next := s.cloneModels()
	delete(next, name)
	s.models.Store(&next)
	if s.cfg.OnConfig != nil {
		s.cfg.OnConfig(name, nil)
	}
	for _, v := range old.byNumber {
		s.retire(m, v, retireRemoved)
	}
	s.log.Info("model removed", zap.String("model", name))
}

func (s *Server) cloneModels() map[string]*model {
	cur := *s.models.Load()
	next := make(map[string]*model, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	return next
}

func (s *Server) applyModel(ctx context.Context, d Desired) {
	m, err := s.model(d.Name)
	if err != nil {
		m = newModel(d.Name)
		next := s.cloneModels()
		next[d.Name] = m
		s.models.Store(&next)
	}
	cur := m.serving.Load()
	acts := plan(d, m.loaded(cur))

	m.mu.Lock()
	if d.ConfigErr != nil {
		m.reason = "config.yaml: " + d.ConfigErr.Error()
	} else {
		m.reason = ""
		m.cfg = d.Config
	}
	m.mu.Unlock()
	if d.ConfigErr != nil {
		s.log.Error("model config rejected; serving versions keep serving",
			zap.String("model", d.Name), zap.Error(d.ConfigErr))
	} else {
		s.setSequences(m, d.Config.SequenceBatching)
	}
	s.execute(ctx, m, cur, d, acts)
}

// execute carries out a plan for model m whose serving set is cur, then
// publishes the new serving set and retires what it replaced or dropped.
// With a broken config nothing is loaded or retired: the serving set
// stands.
func (s *Server) execute(ctx context.Context, m *model, cur *servingSet, d Desired, acts []action) {
	cfg := d.Config
	next := make(map[int64]*version, len(acts))
	type retiring struct {
		v   *version
		how retirement
	}
	var retired []retiring
	for _, a := range acts {
		old := cur.byNumber[a.number]
		switch a.kind {
		case actKeep, actHold:
			if old != nil {
				next[a.number] = old
			}
			if a.kind == actKeep && old != nil {
				s.keepState(m, a.number, a.reason)
			}
		case actUnavailable:
			s.setState(m, a.number, StateUnavailable, a.reason)
		case actFail:
			s.versionFailed(m, a, old, a.want.Err, next)
		case actLoad, actReload:
			if old == nil {
				s.setState(m, a.number, StateLoading, "")
			}
			nv, err := s.loadVersion(ctx, m.name, a.want, a.fingerprint, cfg, old)
			if err != nil {
				s.versionFailed(m, a, old, err, next)
				continue
			}
			next[a.number] = nv
			m.mu.Lock()
			delete(m.failed, a.number)
			m.mu.Unlock()
			s.setState(m, a.number, StateReady, "")
			s.setBatching(m, a.number, nv)
			if old != nil {
				retired = append(retired, retiring{old, retireReplaced})
			}
			s.log.Info("version ready", zap.String("model", m.name), zap.String("version", nv.label),
				zap.Bool("replaced", old != nil))
		case actRetire:
			retired = append(retired, retiring{old, retireRemoved})
		case actForget:
			s.moveState(m, a.number, a.from, stateGone, "")
		}
	}
	if d.ConfigErr != nil {
		return
	}
	traffic := cfg.Traffic
	pinned, candidate, baseline, auto := s.pinForRollout(m, cur, next, cfg)
	if auto {
		traffic = pinned
	}
	m.serving.Store(newServingSet(next, traffic))
	if s.cfg.OnConfig != nil {
		s.cfg.OnConfig(m.name, &cfg)
	}
	for _, r := range retired {
		s.retire(m, r.v, r.how)
	}
	if auto {
		s.cfg.OnNewVersion(m.name, candidate, baseline, cfg.Rollout.Clone())
	}
}

// loaded is the model's state as plan reads it.
func (m *model) loaded(cur *servingSet) loadedState {
	st := loadedState{serving: make(map[int64]string, len(cur.byNumber))}
	for n, v := range cur.byNumber {
		st.serving[n] = v.fingerprint
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st.failed = maps.Clone(m.failed)
	st.listed = make(map[int64]State, len(m.entries))
	for n, e := range m.entries {
		st.listed[n] = e.State
	}
	return st
}

// stateGone, as the target of moveState, removes the index entry and the
// version's series.
const stateGone State = ""

// setState sets a version's index entry and state gauge together.
func (s *Server) setState(m *model, n int64, to State, reason string) {
	s.moveState(m, n, "", to, reason)
}

// keepState lists a version that keeps serving as READY with reason (a
// config error, or none once the config is good again), changing the entry
// only when it says something else now.
func (s *Server) keepState(m *model, n int64, reason string) {
	m.mu.Lock()
	e, ok := m.entries[n]
	m.mu.Unlock()
	if !ok || e.State != StateReady || e.Reason != reason {
		s.setState(m, n, StateReady, reason)
	}
}

// moveState is the one writer of a version's index entry and state gauge,
// which always change together. With from != "", nothing changes unless the
// entry is in state from now; it reports whether the change happened.
func (s *Server) moveState(m *model, n int64, from, to State, reason string) bool {
	label := strconv.FormatInt(n, 10)
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[n]; from != "" && (!ok || e.State != from) {
		return false
	}
	if to == stateGone {
		delete(m.entries, n)
		s.metrics.deleteVersion(m.name, label)
		return true
	}
	e := IndexEntry{Name: m.name, Version: label, State: to, Reason: reason}
	if to == StateReady {
		e.Batching = m.entries[n].Batching // the instance serving is unchanged
	}
	m.entries[n] = e
	s.metrics.setState(m.name, label, to)
	return true
}

// setBatching lists how the newly serving instance v of version n batches.
func (s *Server) setBatching(m *model, n int64, v *version) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[n]; ok {
		e.Batching = ""
		if v.tuning != nil {
			e.Batching = v.tuning.String()
		}
		m.entries[n] = e
	}
}

// versionFailed records a failed load. If an older instance of the same
// version is serving, it keeps serving: a bad file never takes a healthy
// version down.
func (s *Server) versionFailed(m *model, a action, old *version, err error, next map[int64]*version) {
	m.mu.Lock()
	m.failed[a.number] = a.fingerprint
	m.mu.Unlock()
	s.log.Error("version failed to load", zap.String("model", m.name), zap.String("version", strconv.FormatInt(a.number, 10)), zap.Error(err))
	if old != nil {
		next[a.number] = old
		s.setState(m, a.number, StateReady, "reload failed, previous instance still serving: "+err.Error())
		return
	}
	s.setState(m, a.number, StateUnavailable, err.Error())
}

// loadVersion loads, checks and warms up one version and starts its
// batcher. old, when not nil, is the instance it is to replace in place:
// the new one must have the same signature. On any failure the session is
// closed again (one deferred rollback).
func (s *Server) loadVersion(ctx context.Context, name string, dv DesiredVersion, fp string, cfg repository.Config, old *version) (v *version, err error) {
	log := s.log.With(zap.String("model", name), zap.String("version", strconv.FormatInt(dv.Number, 10)))
	v, err = openVersion(ctx, s.loader, dv, fp, &cfg, old, log)
	if err != nil {
		return nil, err
	}
	sess := v.sess // v is nil once a failure returns
	defer func() {
		if err == nil {
			return
		}
		if cerr := sess.Close(); cerr != nil {
			s.log.Warn("closing a session that failed to load", zap.String("model", name), zap.String("version", strconv.FormatInt(dv.Number, 10)), zap.Error(cerr))
		}
	}()
	if err := s.prepare(name, v, dv, cfg); err != nil {
		return nil, err
	}
	var inAxes, outAxes []int
	if cfg.MaxBatchSize > 0 {
		inAxes, outAxes = batchAxes(v.inputs, v.outputs, cfg.SequenceBatching)
	}
	v.versionCounters = s.metrics.counters(name, v.label)
	bc := batcher.Config{
		MaxBatchSize:   cfg.MaxBatchSize,
		Instances:      max(cfg.Instances.Count, 1),
		MaxQueueSize:   s.cfg.DefaultMaxQueueSize,
		DefaultTimeout: s.cfg.DefaultTimeout,
		Model:          name,
		Version:        v.label,
		// A version that ran its warmup has answered other input, so a
		// failure pinned on the first request is already a rejection.
		WarmedUp:   len(cfg.Warmup.BatchSizes) > 0 || v.tuning != nil,
		InputAxes:  inAxes,
		OutputAxes: outAxes,
	}
	if v.tuning != nil {
		bc.BatchCap = v.tuning.Best
	}
	if cfg.SequenceBatching != nil {
		// Sequences batch whatever is queued together, and wait
		// dynamic_batching's delay for companions when it is configured.
		bc.Batching = true
	}
	if db := cfg.DynamicBatching; db != nil {
		bc.Batching = true
		if db.Dispatch != repository.DispatchWait {
			bc.Dispatch = batcher.DispatchImmediate
		}
		bc.MaxQueueDelay = db.MaxQueueDelay
		bc.PreferredBatchSizes = db.PreferredBatchSizes
		bc.MaxQueueSize = db.MaxQueueSize
		bc.DefaultTimeout = db.DefaultTimeout
	}
	if v.batch, err = batcher.New(v.sess, bc, log, s.bm); err != nil {
		return nil, fmt.Errorf("batcher: %w", err)
	}
	return v, nil
}

// openVersion loads one version's session and makes it ready to run: the
// signature check against old (when not nil), the batch-dimension check
// the warmup and, for max_batch_size or preferred_batch_sizes auto, the
// batch size measurement (v.tuning). It is the one load path of the server
// and of the offline commands (Open). max_batch_size: auto on a model
// without a batch dimension turns batching off in *cfg. On failure the
// session is closed again.
func openVersion(ctx context.Context, l Loader, dv DesiredVersion, fp string, cfg *repository.Config, old *version, log *zap.Logger) (v *version, err error) {
	sess, err := l.Load(ctx, dv.Path, cfg.Instances)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, sess.Close())
		}
	}()
	v = newVersion(dv.Number, fp, sess)
	if old != nil {
		if err := sameSignature(old, v); err != nil {
			return nil, err
		}
	}
	var inAxes, outAxes []int
	if cfg.MaxBatchSize > 0 {
		inAxes, outAxes = batchAxes(v.inputs, v.outputs, cfg.SequenceBatching)
	}
	if cfg.MaxBatchSizeAuto && checkBatchDims(v, cfg.MaxBatchSize, inAxes, outAxes) != nil {
		// auto on a model without a batch dimension: served as it is.
		log.Info("max_batch_size auto: not every input and output has a dynamic first dimension; serving without batching")
		cfg.MaxBatchSize, cfg.MaxBatchSizeAuto, cfg.DynamicBatching = 0, false, nil
		inAxes, outAxes = nil, nil
	}
	if sb := cfg.SequenceBatching; sb != nil {
		if v.seq, err = newSeqPlan(sb, v.inputs, v.outputs); err != nil {
			return nil, err
		}
	}
	if err := checkBatchDims(v, cfg.MaxBatchSize, inAxes, outAxes); err != nil {
		return nil, err
	}
	if err := checkRedact(v, cfg.PayloadLog); err != nil {
		return nil, err
	}
	for in := range cfg.Warmup.Dims {
		if _, ok := v.inputIndex[in]; !ok {
			return nil, fmt.Errorf("%w: %q (the model's inputs are %s)", errUnknownDimsInput, in, specNames(v.inputs))
		}
	}
	if err := warmup(ctx, sess, v.inputs, *cfg, inAxes); err != nil {
		return nil, fmt.Errorf("warmup: %w", err)
	}
	if cfg.AutoBatch() {
		budget := cfg.DynamicBatching.TuningTime
		if budget == 0 {
			budget = repository.DefaultTuningTime
		}
		meas, err := MeasureBatchSizes(ctx, sess, v.inputs, cfg.Warmup.Dims, inAxes, cfg.MaxBatchSize, budget)
		if err != nil {
			return nil, fmt.Errorf("measuring batch sizes: %w", err)
		}
		v.tuning = &meas
		log.Info("batch size measured", zap.Int("chosen", meas.Best), zap.String("measurement", meas.String()))
	}
	return v, nil
}

// checkBatchDims requires a batching model's inputs and outputs to have a
// variable batch dimension: the first, or a state's batch_axis. Scalars
// have none: every request of a batch shares their value.
func checkBatchDims(v *version, maxBatch int, inAxes, outAxes []int) error {
	if maxBatch == 0 {
		return nil
	}
	specs := append(slices.Clip(v.inputs), v.outputs...)
	axes := append(slices.Clip(inAxes), outAxes...)
	for i, sp := range specs {
		axis := axes[i]
		if axis == tensor.NoAxis {
			continue
		}
		if axis >= len(sp.Shape) || sp.Shape[axis] >= 0 {
			if axis == 0 {
				return fmt.Errorf("max_batch_size is %d but %q has shape %v: its first dimension must be dynamic (-1) to batch; set max_batch_size: 0", maxBatch, sp.Name, sp.Shape)
			}
			return fmt.Errorf("max_batch_size is %d but state %q has shape %v: its dimension %d (sequence_batching batch_axis) must be dynamic (-1) to batch", maxBatch, sp.Name, sp.Shape, axis)
		}
	}
	return nil
}

// checkRedact requires every input payload_log.redact names to be an input
// of the model: a misspelt name would otherwise log the input it meant to
// hide. Only the model file declares its inputs, so this runs at load.
func checkRedact(v *version, pl *repository.PayloadLog) error {
	if pl == nil {
		return nil
	}
	for i, name := range pl.Redact {
		if !slices.ContainsFunc(v.inputs, func(sp tensor.Spec) bool { return sp.Name == name }) {
			return fmt.Errorf("%w: payload_log.redact[%d]: %q is not an input of the model", ErrInvalidConfig, i, name)
		}
	}
	return nil
}

// warmup runs the configured batch sizes once each with zero-valued inputs so
// the first real request does not pay for lazy initialisation.
//
// axes gives each input's batch axis (nil: the first).
func warmup(ctx context.Context, sess Model, specs []tensor.Spec, cfg repository.Config, axes []int) error {
	for _, bs := range cfg.Warmup.BatchSizes {
		in, err := ZeroInputs(specs, cfg.Warmup.Dims, axes, cfg.MaxBatchSize > 0, bs)
		if err != nil {
			return err
		}
		if _, err := sess.Run(ctx, in); err != nil {
			return fmt.Errorf("batch size %d: %w", bs, err)
		}
	}
	return nil
}

// axisAt returns axes[i], or 0 when axes does not say.
func axisAt(axes []int, i int) int {
	if i < len(axes) {
		return axes[i]
	}
	return 0
}

// retirement says what the index shows of a retired version.
type retirement int

const (
	retireReplaced retirement = iota // a newer instance took its place: index untouched
	retireRemoved                    // UNLOADING, then gone from the index
	retireUnloaded                   // UNLOADING, then UNAVAILABLE "unloaded"
)

// retire takes v out of service in the background: it waits for its
// in-flight requests (bounded by DrainTimeout), drains its batcher and frees
// its session.
func (s *Server) retire(m *model, v *version, how retirement) <-chan struct{} {
	done := make(chan struct{})
	v.retire()
	if how != retireReplaced {
		s.setState(m, v.number, StateUnloading, "")
	}
	// A version replaced by a hot swap keeps its sequences until they end
	// (each holds a reference, and idles out at the latest); one that
	// leaves the server ends them now.
	keepSequences := v.seq != nil && how != retireUnloaded && !s.closing.Load()
	if seqs := m.sequences(); seqs != nil && !keepSequences {
		seqs.EndOwner(v, batcher.EndUnloaded)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		timer := time.NewTimer(s.cfg.DrainTimeout)
		defer timer.Stop()
		drainTimeout := timer.C
		if keepSequences {
			drainTimeout = nil
		}
		select {
		case <-v.drained:
		case <-drainTimeout:
			s.log.Warn("version still busy after the drain timeout; closing it", zap.String("model", m.name), zap.String("version", v.label))
		}
		s.closeVersion(v)
		if how == retireReplaced {
			return
		}
		if how == retireUnloaded {
			s.moveState(m, v.number, StateUnloading, StateUnavailable, "unloaded")
		} else {
			s.moveState(m, v.number, StateUnloading, stateGone, "")
		}
		if s.cfg.OnRelease != nil {
			s.cfg.OnRelease(m.name, v.label)
		}
		s.log.Info("version released", zap.String("model", m.name), zap.String("version", v.label))
	}()
	return done
}

func (s *Server) closeVersion(v *version) {
	if v.batch != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
		if err := v.batch.Close(ctx); err != nil {
			s.log.Warn("batcher drain incomplete", zap.String("version", v.label), zap.Error(err))
		}
		cancel()
	}
	if err := v.sess.Close(); err != nil {
		s.log.Warn("session close failed", zap.String("version", v.label), zap.Error(err))
	}
}

// ErrSessionsOpen means Close returned before every session was closed:
// what the sessions depend on (the ONNX Runtime environment) must stay.
var ErrSessionsOpen = errors.New("sessions still open")

// Close refuses new work, drains every version's queue, frees every
// session, waits for background retirements and stops the shadow copies. It
// returns nil once every session is closed; if ctx ends first it returns an
// error wrapping ctx's error and ErrSessionsOpen, and the retirements go on
// in the background (each bounded by the drain timeout). Close may be
// called again to wait for them.
func (s *Server) Close(ctx context.Context) error {
	s.shutting.Store(true)
	s.mu.Lock()
	s.closing.Store(true)
	for _, m := range *s.models.Load() {
		old := m.serving.Swap(newServingSet(nil, m.trafficSpec()))
		for _, v := range old.byNumber {
			s.retire(m, v, retireReplaced)
		}
	}
	s.mu.Unlock()
	for _, m := range *s.models.Load() {
		if seqs := m.sequences(); seqs != nil {
			seqs.EndAll(batcher.EndUnloaded)
			seqs.Close()
		}
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("serving drain: %w: %w", ctx.Err(), ErrSessionsOpen)
	}
	// Mirrored copies already queued still run while the versions drain;
	// either way the shadow workers stop before Close returns, and the taps
	// after them, since shadow answers are handed to the taps too.
	s.shadow.close()
	s.taps.close()
	return err
}

// Index lists every known model version with its state, sorted by model then
// version.
func (s *Server) Index() []IndexEntry {
	var out []IndexEntry
	for _, m := range *s.models.Load() {
		m.mu.Lock()
		for _, e := range m.entries {
			out = append(out, e)
		}
		if len(m.entries) == 0 && m.reason != "" {
			out = append(out, IndexEntry{Name: m.name, State: StateUnavailable, Reason: m.reason})
		}
		m.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b IndexEntry) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		an, _ := strconv.ParseInt(a.Version, 10, 64)
		bn, _ := strconv.ParseInt(b.Version, 10, 64)
		return cmp.Compare(an, bn)
	})
	return out
}
