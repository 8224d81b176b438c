package serving

import (
	"cmp"
	"context"
	"fmt"
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
	m.mu.Lock()
	for n, e := range m.entries {
		if e.State != StateUnloading {
			m.entries[n] = IndexEntry{Name: name, Version: e.Version, State: StateUnavailable, Reason: "unloaded"}
		}
	}
	m.mu.Unlock()
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
	if d.ConfigErr != nil {
		reason := "config.yaml: " + d.ConfigErr.Error()
		m.mu.Lock()
		m.reason = reason
		m.mu.Unlock()
		s.log.Error("model config rejected; serving versions keep serving",
			zap.String("model", d.Name), zap.Error(d.ConfigErr))
		for _, dv := range d.Versions {
			if _, ok := cur.byNumber[dv.Number]; !ok {
				m.setEntry(dv.Number, StateUnavailable, reason)
				s.metrics.setState(d.Name, fmt.Sprint(dv.Number), StateUnavailable)
			}
		}
		return
	}
	m.mu.Lock()
	m.reason = ""
	m.cfg = d.Config
	m.mu.Unlock()

	next := make(map[int64]*version, len(d.Versions))
	var retired []*version
	wanted := make(map[int64]bool, len(d.Versions))
	for _, dv := range d.Versions {
		wanted[dv.Number] = true
		fp := dv.Fingerprint + "/" + d.ConfigHash
		old := cur.byNumber[dv.Number]
		if old != nil && old.fingerprint == fp {
			next[dv.Number] = old
			continue
		}
		label := fmt.Sprint(dv.Number)
		if m.failedBefore(dv.Number, fp) {
			if old != nil {
				next[dv.Number] = old
			}
			continue // the same bytes failed already; wait for a change
		}
		if dv.Err != nil {
			s.versionFailed(m, dv.Number, fp, old, dv.Err, next)
			continue
		}
		if old == nil {
			m.setEntry(dv.Number, StateLoading, "")
			s.metrics.setState(d.Name, label, StateLoading)
		}
		nv, err := s.loadVersion(ctx, d.Name, dv, fp, d.Config)
		if err == nil && old != nil {
			if err = sameSignature(old, nv); err != nil {
				s.closeVersion(nv)
			}
		}
		if err != nil {
			s.versionFailed(m, dv.Number, fp, old, err, next)
			continue
		}
		next[dv.Number] = nv
		m.mu.Lock()
		delete(m.failed, dv.Number)
		m.mu.Unlock()
		m.setEntry(dv.Number, StateReady, "")
		s.metrics.setState(d.Name, label, StateReady)
		if old != nil {
			retired = append(retired, old)
		}
		s.log.Info("version ready", zap.String("model", d.Name), zap.String("version", label),
			zap.Bool("replaced", old != nil))
	}
	for n, v := range cur.byNumber {
		if !wanted[n] {
			retired = append(retired, v)
		}
	}
	m.serving.Store(newServingSet(next, d.Config.Traffic))
	for _, v := range retired {
		how := retireReplaced
		if !wanted[v.number] {
			how = retireRemoved
		}
		s.retire(m, v, how)
	}
	// Versions that vanished without ever serving leave the index.
	m.mu.Lock()
	for n, e := range m.entries {
		if !wanted[n] && e.State != StateUnloading {
			if _, serving := cur.byNumber[n]; !serving {
				delete(m.entries, n)
				s.metrics.deleteVersion(d.Name, e.Version)
			}
		}
	}
	m.mu.Unlock()
}

// versionFailed records a failed load. If an older instance of the same
// version is serving, it keeps serving: a bad file never takes a healthy
// version down.
func (s *Server) versionFailed(m *model, n int64, fp string, old *version, err error, next map[int64]*version) {
	label := fmt.Sprint(n)
	m.mu.Lock()
	m.failed[n] = fp
	m.mu.Unlock()
	s.log.Error("version failed to load", zap.String("model", m.name), zap.String("version", label), zap.Error(err))
	if old != nil {
		next[n] = old
		m.setEntry(n, StateReady, "reload failed, previous instance still serving: "+err.Error())
		return
	}
	m.setEntry(n, StateUnavailable, err.Error())
	s.metrics.setState(m.name, label, StateUnavailable)
}

func (s *Server) loadVersion(ctx context.Context, name string, dv DesiredVersion, fp string, cfg repository.Config) (*version, error) {
	sess, err := s.loader.Load(ctx, dv.Path, cfg.Instances)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	v := newVersion(dv.Number, fp, sess)
	v.versionCounters = s.metrics.counters(name, v.label)
	if err := checkBatchDims(v, cfg.MaxBatchSize); err != nil {
		_ = sess.Close()
		return nil, err
	}
	if err := warmup(ctx, sess, v.inputs, cfg); err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("warmup: %w", err)
	}
	bc := batcher.Config{
		MaxBatchSize:   cfg.MaxBatchSize,
		Instances:      max(cfg.Instances.Count, 1),
		MaxQueueSize:   s.cfg.DefaultMaxQueueSize,
		DefaultTimeout: s.cfg.DefaultTimeout,
		Model:          name,
		Version:        v.label,
	}
	if db := cfg.DynamicBatching; db != nil {
		bc.Batching = true
		bc.MaxQueueDelay = db.MaxQueueDelay
		bc.PreferredBatchSizes = db.PreferredBatchSizes
		bc.MaxQueueSize = db.MaxQueueSize
		bc.DefaultTimeout = db.DefaultTimeout
	}
	v.batch, err = batcher.New(sess, bc, s.log.With(zap.String("model", name), zap.String("version", v.label)), s.bm)
	if err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("batcher: %w", err)
	}
	return v, nil
}

// checkBatchDims requires a batching model's inputs and outputs to have a
// variable first dimension, the batch dimension.
func checkBatchDims(v *version, maxBatch int) error {
	if maxBatch == 0 {
		return nil
	}
	for _, sp := range append(slices.Clip(v.inputs), v.outputs...) {
		if len(sp.Shape) == 0 || sp.Shape[0] >= 0 {
			return fmt.Errorf("max_batch_size is %d but %q has shape %v: its first dimension must be dynamic (-1) to batch; set max_batch_size: 0", maxBatch, sp.Name, sp.Shape)
		}
	}
	return nil
}

// warmup runs the configured batch sizes once each with zero-valued inputs so
// the first real request does not pay for lazy initialisation.
func warmup(ctx context.Context, sess Model, specs []tensor.Spec, cfg repository.Config) error {
	sizes := cfg.Warmup.BatchSizes
	for _, bs := range sizes {
		in := make([]tensor.Tensor, len(specs))
		for i, sp := range specs {
			shape := slices.Clone(sp.Shape)
			for j, d := range shape {
				if d < 0 {
					shape[j] = 1
				}
			}
			if cfg.MaxBatchSize > 0 && len(shape) > 0 {
				shape[0] = int64(bs)
			}
			n, err := tensor.ElementCount(shape)
			if err != nil {
				return err
			}
			t := tensor.Tensor{Name: sp.Name, DataType: sp.DataType, Shape: shape}
			if sp.DataType == tensor.Bytes {
				for range n {
					t.Data = tensor.AppendBytesElement(t.Data, []byte("0"))
				}
			} else {
				t.Data = make([]byte, n*int64(sp.DataType.Size()))
			}
			in[i] = t
		}
		if _, err := sess.Run(ctx, in); err != nil {
			return fmt.Errorf("batch size %d: %w", bs, err)
		}
	}
	return nil
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
		m.setEntry(v.number, StateUnloading, "")
		s.metrics.setState(m.name, v.label, StateUnloading)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		timer := time.NewTimer(s.cfg.DrainTimeout)
		defer timer.Stop()
		select {
		case <-v.drained:
		case <-timer.C:
			s.log.Warn("version still busy after the drain timeout; closing it", zap.String("model", m.name), zap.String("version", v.label))
		}
		s.closeVersion(v)
		if how == retireReplaced {
			return
		}
		m.mu.Lock()
		if e, ok := m.entries[v.number]; ok && e.State == StateUnloading {
			if how == retireUnloaded {
				m.entries[v.number] = IndexEntry{Name: m.name, Version: v.label, State: StateUnavailable, Reason: "unloaded"}
				s.metrics.setState(m.name, v.label, StateUnavailable)
			} else {
				delete(m.entries, v.number)
				s.metrics.deleteVersion(m.name, v.label)
			}
		}
		m.mu.Unlock()
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

// Close refuses new work, drains every version's queue, frees every session
// and waits for background retirements. It returns ctx's error if the drain
// did not finish in time.
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
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.shadow.close()
		s.taps.close()
		return nil
	case <-ctx.Done():
		s.taps.close()
		return fmt.Errorf("serving drain: %w", ctx.Err())
	}
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
