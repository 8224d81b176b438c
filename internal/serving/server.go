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
	// Root is the model repository folder, read by LoadModel.
	Root string
	// Mode is the model control mode (default poll).
	Mode ControlMode
	// OnRelease, when set, is called after a version left the server for
	// good (removed or unloaded, not replaced in place), so collectors kept
	// outside this package can drop its series.
	OnRelease func(model, version string)
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

	shadow *shadowQueue

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
	s := &Server{loader: l, cfg: cfg, log: log, metrics: m, bm: bm,
		shadow: newShadowQueue(shadowQueueSize, 1, cfg.DefaultTimeout, log)}
	empty := map[string]*model{}
	s.models.Store(&empty)
	return s
}

// Live reports whether the process is up; it is true until Close returns.
func (s *Server) Live() bool { return true }

// Ready reports whether the server takes traffic: not shutting down, and
// every startup model has a READY version.
func (s *Server) Ready() bool {
	if s.shutting.Load() {
		return false
	}
	ms := *s.models.Load()
	for _, name := range s.cfg.StartupModels {
		m, ok := ms[name]
		if !ok || len(m.serving.Load().ready) == 0 {
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

// Infer validates req, routes it to a version and runs it through that
// version's batcher. It returns exactly one response or one error.
func (s *Server) Infer(ctx context.Context, req *Request) (*Response, error) {
	if s.closing.Load() {
		return nil, ErrShuttingDown
	}
	m, err := s.model(req.Model)
	if err != nil {
		return nil, err
	}
	for range maxRetire {
		v, mirror, err := m.pick(req)
		if err != nil {
			return nil, err
		}
		if !v.acquire() {
			continue // retired under us; the next snapshot has its successor
		}
		resp, in, err := s.run(ctx, m, v, req)
		v.release()
		if errors.Is(err, batcher.ErrClosed) && req.Version == "" {
			continue
		}
		if err == nil && mirror != nil {
			mirror.shadow.mirrored.Inc()
			s.shadow.offer(m, mirror, in, resp.all)
		}
		return resp, err
	}
	return nil, fmt.Errorf("model %q: versions changing too fast: %w", req.Model, ErrNotReady)
}

func (s *Server) run(ctx context.Context, m *model, v *version, req *Request) (*Response, []tensor.Tensor, error) {
	in, err := v.arrange(req.Inputs)
	if err != nil {
		return nil, nil, &versionError{m.name, v.label, err}
	}
	outIdx, err := v.outputIndexes(req.Outputs)
	if err != nil {
		return nil, nil, &versionError{m.name, v.label, err}
	}
	start := time.Now()
	out, err := v.batch.Submit(ctx, in)
	v.stats.record(start, err)
	if err != nil {
		return nil, nil, &versionError{m.name, v.label, err}
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

// versionError is a failure after a version was chosen; it keeps the
// version so metrics and logs can name it.
type versionError struct {
	model, version string
	err            error
}

func (e *versionError) Error() string {
	return fmt.Sprintf("model %q version %s: %v", e.model, e.version, e.err)
}

func (e *versionError) Unwrap() error { return e.err }

// VersionOf returns the version that a failed request had been routed to,
// or "" when it failed before a version was chosen.
func VersionOf(err error) string {
	var ve *versionError
	if errors.As(err, &ve) {
		return ve.version
	}
	return ""
}

// Known reports whether a model is loaded and whether version names one of
// its versions (serving or listed in the index). Front ends use it to keep
// metric labels to names the server chose, never a client's invention.
func (s *Server) Known(model, version string) (modelKnown, versionKnown bool) {
	m, ok := (*s.models.Load())[model]
	if !ok {
		return false, false
	}
	if version == "" {
		return true, true
	}
	n, err := parseVersion(version)
	if err != nil {
		return true, false
	}
	if _, ok := m.serving.Load().byNumber[n]; ok {
		return true, true
	}
	_, ok = m.known(n)
	return true, ok
}
