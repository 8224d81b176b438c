package serving

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Loader loads one model version from its file. cmd/serve adapts
// runtime.Load to it; tests pass fakes. Load may take seconds and must honour
// ctx where it can.
type Loader interface {
	Load(ctx context.Context, path string, inst repository.Instances) (Model, error)
}

// Config holds the serving core's settings.
type Config struct {
	// DrainTimeout bounds how long a retiring version may take to finish its
	// in-flight requests before its batcher is closed regardless.
	DrainTimeout time.Duration
	// DefaultMaxQueueSize bounds the queue of a model without
	// dynamic_batching (default 1024).
	DefaultMaxQueueSize int
	// DefaultTimeout is the queue deadline of a model without
	// dynamic_batching when the client sets none (default 30s).
	DefaultTimeout time.Duration
	// StartupModels must each have a READY version for Ready to report true.
	StartupModels []string
	// LenientReadiness is --strict-readiness=false: Ready also counts a
	// startup model that has no loadable version (every version
	// UNAVAILABLE, or a broken config.yaml) once its load was tried, so
	// one broken model cannot keep the server out of its load balancer.
	LenientReadiness bool
	// Root is the model repository folder, read by LoadModel.
	Root string
	// Mode is the model control mode (default poll).
	Mode ControlMode
	// Status maps a failed request's error to its HTTP-style status for tap
	// records; cmd/serve passes transport's table. nil: 500 for every
	// failure.
	Status func(error) int
	// OnRelease, when set, is called after a version left the server for
	// good (removed or unloaded, not replaced in place), so collectors kept
	// outside this package can drop its series.
	OnRelease func(model, version string)
	// OnConfig, when set, is called with a model's accepted config each
	// time Apply or a load publishes its versions, and with nil once the
	// model is removed, so taps configured per model (payload_log) follow
	// config.yaml. It runs under the server's management lock and must not
	// call back into the Server or keep cfg's slices for writing.
	OnConfig func(model string, cfg *repository.Config)
	// OnNewVersion, when set, is called when a version newer than every
	// serving one arrives on a model whose rollout block has auto: true and
	// whose traffic has no split. The split was pinned to baseline, the
	// previous newest version, so candidate serves nothing yet; the callee
	// starts the rollout. It runs under the server's lock: it must not
	// block or call back into the Server.
	OnNewVersion func(model, candidate, baseline string, policy repository.Rollout)
}

// Server is the live set of models. It is safe for concurrent use: the
// request path reads immutable snapshots; loads, unloads and swaps are
// serialised among themselves.
type Server struct {
	loader  Loader
	cfg     Config
	log     *zap.Logger
	metrics *Metrics
	bm      *batcher.Metrics

	mu     sync.Mutex // serialises Apply, Load, Unload and Close
	models atomic.Pointer[map[string]*model]
	// trafficOwners maps a model to the holder of its traffic (see
	// ClaimTraffic); guarded by mu.
	trafficOwners map[string]string

	shadow *shadowQueue
	taps   tapSet
	hook   VersionHook // set before the first load (SetVersionHook)

	shutting atomic.Bool    // readiness false
	closing  atomic.Bool    // new work refused
	wg       sync.WaitGroup // background retirements
}

// New returns an empty Server; Apply or Load fill it. m and bm may be nil.
func New(l Loader, cfg Config, log *zap.Logger, m *Metrics, bm *batcher.Metrics) *Server {
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.DefaultMaxQueueSize <= 0 {
		cfg.DefaultMaxQueueSize = 1024
	}
	if cfg.DefaultTimeout <= 0 {
		cfg.DefaultTimeout = 30 * time.Second
	}
	s := &Server{loader: l, cfg: cfg, log: log, metrics: m, bm: bm}
	s.taps.status = cfg.Status
	s.shadow = newShadowQueue(shadowQueueSize, 1, cfg.DefaultTimeout, log, &s.taps)
	empty := map[string]*model{}
	s.models.Store(&empty)
	return s
}

// Live reports whether the process is up; it is true until Close returns.
func (s *Server) Live() bool { return true }

// Ready reports whether the server takes traffic: not shutting down, and
// every startup model has a READY version (with LenientReadiness: or has
// none that can load).
func (s *Server) Ready() bool {
	if s.shutting.Load() {
		return false
	}
	ms := *s.models.Load()
	for _, name := range s.cfg.StartupModels {
		m, ok := ms[name]
		if !ok {
			return false
		}
		if len(m.serving.Load().ready) == 0 && !(s.cfg.LenientReadiness && m.unloadable()) {
			return false
		}
	}
	return true
}

// unloadable reports whether the model's load was tried and nothing of it
// can serve: a broken config, or every listed version UNAVAILABLE.
func (m *model) unloadable() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.entries) == 0 {
		return m.reason != ""
	}
	for _, e := range m.entries {
		if e.State != StateUnavailable {
			return false
		}
	}
	return true
}

// SetNotReady turns readiness false at once (the first step of shutdown),
// while requests are still served so load balancers can notice.
func (s *Server) SetNotReady() { s.shutting.Store(true) }

// ModelReady reports whether a model (any version, when version is "") or a
// specific version can serve now.
func (s *Server) ModelReady(name, version string) (bool, error) {
	m, err := s.model(name)
	if err != nil {
		return false, err
	}
	set := m.serving.Load()
	if version == "" {
		return len(set.ready) > 0, nil
	}
	n, err := parseVersion(version)
	if err != nil {
		return false, err
	}
	if v, ok := set.byNumber[n]; ok {
		return v.ready(), nil
	}
	if _, ok := m.known(n); ok {
		return false, nil
	}
	return false, fmt.Errorf("model %q version %s: %w", name, version, ErrVersionNotFound)
}

// ModelMetadata describes a model; with version "" the newest ready version
// supplies the inputs and outputs.
func (s *Server) ModelMetadata(name, ver string) (ModelMetadata, error) {
	m, err := s.model(name)
	if err != nil {
		return ModelMetadata{}, err
	}
	set := m.serving.Load()
	var v *version
	if ver == "" {
		if len(set.ready) == 0 {
			return ModelMetadata{}, fmt.Errorf("model %q: no ready version: %w", name, ErrNotReady)
		}
		v = set.ready[0]
	} else {
		n, err := parseVersion(ver)
		if err != nil {
			return ModelMetadata{}, err
		}
		var ok bool
		if v, ok = set.byNumber[n]; !ok {
			if _, known := m.known(n); known {
				return ModelMetadata{}, fmt.Errorf("model %q version %s: %w", name, ver, ErrNotReady)
			}
			return ModelMetadata{}, fmt.Errorf("model %q version %s: %w", name, ver, ErrVersionNotFound)
		}
	}
	md := ModelMetadata{Name: name, Platform: "onnxruntime_onnx", Inputs: v.inputs, Outputs: v.outputs}
	for _, r := range set.ready {
		md.Versions = append(md.Versions, r.label)
	}
	slices.Reverse(md.Versions)
	return md, nil
}

func (s *Server) model(name string) (*model, error) {
	m, ok := (*s.models.Load())[name]
	if !ok {
		return nil, fmt.Errorf("model %q: %w", name, ErrModelNotFound)
	}
	return m, nil
}

func parseVersion(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("version %q: not a positive integer: %w", v, ErrVersionNotFound)
	}
	return n, nil
}

// shadowQueueSize bounds the mirrored copies waiting to run; beyond it they
// are dropped.
const shadowQueueSize = 256

// maxRetire bounds how often Infer retries when the version it picked was
// retired between the pick and the submit (a hot swap in progress).
const maxRetire = 4

// Infer checks req against the model, routes it to a version and runs it
// through that version's batcher. It returns exactly one response or one
// error; the error carries the request's canonical labels (see Labels). It
// looks the model up once, resolves the sticky routing key from
// req.Metadata itself, and hands the answered request to the registered
// taps.
func (s *Server) Infer(ctx context.Context, req *Request) (*Response, error) {
	m, err := s.model(req.Model)
	if err != nil {
		s.tapRefused(req, "", "", err)
		return nil, err
	}
	if s.closing.Load() {
		return nil, s.refuse(req, m, ErrShuttingDown)
	}
	if seqs := m.sequences(); seqs != nil {
		resp, err := s.inferSequence(ctx, m, seqs, req)
		if !errors.Is(err, errNoSequence) {
			return resp, err
		}
	} else if req.Sequence.ID != "" {
		return nil, s.refuse(req, m, tensor.Invalidf("parameter \"sequence_id\": model %q has no sequence_batching", m.name))
	}
	for range maxRetire {
		v, mirror, err := m.pick(req)
		if err != nil {
			return nil, s.refuse(req, m, err)
		}
		if !v.acquire() {
			continue // retired under us; the next snapshot has its successor
		}
		var tm batcher.Timing
		resp, in, err := s.run(ctx, m, v, req, &tm)
		if errors.Is(err, batcher.ErrClosed) && req.Version == "" {
			v.release()
			continue
		}
		s.tapAnswered(req, m, v, in, resp, err, &tm)
		v.release()
		if err == nil && mirror != nil {
			mirror.shadow.mirrored.Inc()
			s.shadow.offer(m, mirror, req, in, resp.all)
		}
		return resp, err
	}
	return nil, s.refuse(req, m, fmt.Errorf("model %q: versions changing too fast: %w", req.Model, ErrNotReady))
}

// Refuse records a request the front end answered with err before it could
// reach Infer (a body that does not decode, a rate limit): it hands the
// failure to the taps and returns err carrying the canonical labels of the
// model and version the request named, when they exist (see Labels). Like
// Infer, it looks the model up once.
func (s *Server) Refuse(req *Request, err error) error {
	m, merr := s.model(req.Model)
	if merr != nil {
		s.tapRefused(req, "", "", err)
		return err
	}
	return s.refuse(req, m, err)
}

// refuse labels a failure that happened before a version ran the request
// and hands it to the taps.
func (s *Server) refuse(req *Request, m *model, err error) error {
	le := &labelError{model: m.name, version: m.versionLabel(req.Version), err: err}
	s.tapRefused(req, le.model, le.version, err)
	return le
}

func (s *Server) run(ctx context.Context, m *model, v *version, req *Request, tm *batcher.Timing) (*Response, []tensor.Tensor, error) {
	in, err := v.arrange(req.Inputs)
	if err != nil {
		return nil, nil, &labelError{m.name, v.label, err, true}
	}
	outIdx, err := v.outputIndexes(req.Outputs)
	if err != nil {
		return nil, in, &labelError{m.name, v.label, err, true}
	}
	if v.validator != nil {
		if err := v.validator.Validate(in); err != nil {
			return nil, in, &labelError{m.name, v.label, err, true}
		}
	}
	start := time.Now()
	out, err := v.batch.SubmitTimed(ctx, in, tm)
	v.stats.record(start, err)
	if err != nil {
		return nil, in, &labelError{m.name, v.label, err, true}
	}
	resp := &Response{Model: m.name, Version: v.label, ID: req.ID, all: out}
	if outIdx == nil {
		resp.Outputs = out
	} else {
		resp.Outputs = make([]tensor.Tensor, len(outIdx))
		for i, j := range outIdx {
			resp.Outputs[i] = out[j]
		}
	}
	return resp, in, nil
}

// labelError is a failure of a request whose model was found; it carries
// the canonical labels so metrics and logs can name them without asking
// again. prefix says the message does not name the model and version yet.
type labelError struct {
	model, version string
	err            error
	prefix         bool
}

func (e *labelError) Error() string {
	if !e.prefix {
		return e.err.Error()
	}
	return fmt.Sprintf("model %q version %s: %v", e.model, e.version, e.err)
}

func (e *labelError) Unwrap() error { return e.err }

// Labels returns the canonical model and version labels of a request that
// Infer or Refuse failed: names the server chose, never a client's
// invention, so they are safe as metric labels. model is "" for a model
// that is not loaded; version is "" when the request named no version of
// the model and failed before one was chosen.
func Labels(err error) (model, version string) {
	var le *labelError
	if errors.As(err, &le) {
		return le.model, le.version
	}
	return "", ""
}
