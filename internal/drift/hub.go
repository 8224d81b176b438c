package drift

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// TapName is the hub's tap name (the tap label of onnxserve_tap_dropped_total).
const TapName = "drift"

// ErrNoReport means the model or version has no drift block (or is not
// loaded); it maps like serving.ErrModelNotFound (404 / NOT_FOUND).
var ErrNoReport error = noReport{}

type noReport struct{}

func (noReport) Error() string { return "no drift monitoring (no drift block, or not loaded)" }
func (noReport) Unwrap() error { return serving.ErrModelNotFound }

// Hub is drift and validation for every version of a server: the version
// hook that makes each version's Monitor and Validator when it loads, and
// the tap that feeds the monitors. cmd/serve registers it with
// serving.AddTap and Server.SetVersionHook. Safe for concurrent use.
type Hub struct {
	log     *zap.Logger
	metrics *Metrics

	mu   sync.Mutex // serialises changes of mons
	mons atomic.Pointer[map[key]*Monitor]
}

type key struct{ model, version string }

// NewHub returns a Hub whose series register with reg (nil: none). Each
// scrape recomputes the statistics first, so the gauges follow the window
// even while no request arrives.
func NewHub(log *zap.Logger, reg prometheus.Registerer) *Hub {
	h := &Hub{log: log, metrics: NewMetrics(nil)}
	empty := map[key]*Monitor{}
	h.mons.Store(&empty)
	if reg != nil {
		reg.MustRegister(scrapeCollector{h})
	}
	return h
}

// scrapeCollector exposes the hub's series, recomputing every monitored
// version's statistics over its window ending now before it does.
type scrapeCollector struct{ h *Hub }

func (c scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	c.h.metrics.drift.Describe(ch)
	c.h.metrics.alerts.Describe(ch)
	c.h.metrics.failures.Describe(ch)
}

func (c scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, m := range *c.h.mons.Load() {
		if m.observed {
			m.Compute(now)
		}
	}
	c.h.metrics.drift.Collect(ch)
	c.h.metrics.alerts.Collect(ch)
	c.h.metrics.failures.Collect(ch)
}

func (h *Hub) set(k key, m *Monitor) {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := make(map[key]*Monitor, len(*h.mons.Load())+1)
	for kk, mm := range *h.mons.Load() {
		next[kk] = mm
	}
	if m == nil {
		delete(next, k)
	} else {
		next[k] = m
	}
	h.mons.Store(&next)
}

// ConfigOf converts a config's drift block; nil when it has none.
func ConfigOf(d *repository.Drift) Config {
	if d == nil {
		return Config{}
	}
	c := Config{Window: d.Window, Sample: d.Sample, FirstRows: int64(d.FirstRows), MaxFeatures: d.MaxFeatures,
		AlertStat: Stat(d.AlertStat), AlertThreshold: d.AlertThreshold}
	if len(d.Features) > 0 {
		c.Modes = Modes{}
		for name, mode := range d.Features {
			c.Modes[name] = Mode(mode)
		}
	}
	return c
}

// Prepare implements serving.VersionHook: it reads the version's
// profile.json (when there is one), checks it against the model, and
// makes the version's monitor and validator. A malformed or mismatched
// profile fails the load, naming the field.
func (h *Hub) Prepare(v serving.VersionInfo) (serving.Validator, error) {
	k := key{v.Model, v.Version}
	cfg := v.Config
	h.metrics.forget(v.Model, v.Version)
	if cfg.Drift == nil && cfg.Validation == nil {
		h.set(k, nil)
		return nil, nil
	}
	path := filepath.Join(v.Dir, ProfileFile)
	prof, err := ReadProfile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		prof = nil
	case err != nil:
		return nil, fmt.Errorf("%s: %w", ProfileFile, err)
	}
	val := cfg.Validation
	if prof == nil && cfg.Drift == nil && val != nil && val.Range == repository.RangeProfile {
		return nil, fmt.Errorf("validation.range is profile but there is no %s and no drift block to learn one: %w", path, ErrProfile)
	}
	for name := range rangesOf(val) {
		if !slices.ContainsFunc(v.Inputs, func(s tensor.Spec) bool { return s.Name == name }) {
			return nil, fmt.Errorf("validation.range names %q, which is not an input of the model: %w", name, repository.ErrInvalidConfig)
		}
	}
	dc := ConfigOf(cfg.Drift)
	if prof == nil && cfg.Drift == nil {
		dc.FirstRows = 0 // never learns: nothing observes it
	}
	mon, err := NewMonitor(v.Model, v.Version, v.Inputs, v.Outputs, prof, dc, h.log, h.metrics)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ProfileFile, err)
	}
	mon.observed = cfg.Drift != nil
	h.set(k, mon)
	if val == nil {
		return nil, nil
	}
	return newValidator(mon, *val, h.metrics), nil
}

// rangesOf returns the explicit ranges of a validation block, nil for none.
func rangesOf(v *repository.Validation) map[string][2]float64 {
	if v == nil {
		return nil
	}
	return v.Ranges
}

// Release forgets a version that left the server, and its series.
func (h *Hub) Release(model, version string) {
	h.set(key{model, version}, nil)
	h.metrics.forget(model, version)
}

// Monitor returns the monitor of a version, nil when it has none.
func (h *Hub) Monitor(model, version string) *Monitor {
	return (*h.mons.Load())[key{model, version}]
}

// OutputDrift is Monitor.OutputDrift of a version with a drift block, now;
// ok is false for a version without one.
func (h *Hub) OutputDrift(model, version string) (value float64, rows int64, source string, ok bool) {
	m := h.Monitor(model, version)
	if m == nil || !m.observed {
		return 0, 0, "", false
	}
	return m.OutputDrift(time.Now())
}

// Reports returns the drift reports of a model's monitored versions
// (version "" for all of them, newest first), computed now.
func (h *Hub) Reports(model, version string) ([]Report, error) {
	now := time.Now()
	var out []Report
	for k, m := range *h.mons.Load() {
		if k.model != model || (version != "" && k.version != version) || !m.observed {
			continue
		}
		out = append(out, m.Compute(now))
	}
	if len(out) == 0 {
		if version == "" {
			return nil, fmt.Errorf("model %q: %w", model, ErrNoReport)
		}
		return nil, fmt.Errorf("model %q version %s: %w", model, version, ErrNoReport)
	}
	slices.SortFunc(out, func(a, b Report) int { return versionOrder(b.Version, a.Version) })
	return out, nil
}

func versionOrder(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Sample is what the hub's tap keeps of one answered request: copies of
// its sampled rows.
type Sample struct {
	m       *Monitor
	at      time.Time
	in, out []tensor.Tensor
}

// Keep implements serving.Tap: for a successful request of a monitored
// version it copies the sampled rows (drift.sample) of its inputs and
// outputs.
func (h *Hub) Keep(r *serving.Record) (*Sample, bool) {
	if r.Class != serving.ClassOK || r.Outputs == nil || len(r.Inputs) == 0 {
		return nil, false
	}
	m := (*h.mons.Load())[key{r.Model, r.Version}]
	if m == nil || !m.observed {
		return nil, false
	}
	n, _ := rows(r.Inputs[0])
	var pick []int64
	if m.cfg.Sample < 1 {
		for i := range n {
			if rand.Float64() < m.cfg.Sample {
				pick = append(pick, i)
			}
		}
		if len(pick) == 0 {
			return nil, false
		}
	}
	s := &Sample{m: m, at: r.Arrival, in: make([]tensor.Tensor, len(r.Inputs)), out: make([]tensor.Tensor, len(r.Outputs))}
	for i, t := range r.Inputs {
		s.in[i] = takeRows(t, n, pick)
	}
	for i, t := range r.Outputs {
		s.out[i] = takeRows(t, n, pick)
	}
	return s, true
}

// Consume implements serving.Tap: it counts the rows into the version's
// window, on the tap's goroutine.
func (h *Hub) Consume(s *Sample) { s.m.Observe(s.at, s.in, s.out) }

// takeRows copies rows pick (nil: all) of t; a tensor whose row count is
// not n is copied whole.
func takeRows(t tensor.Tensor, n int64, pick []int64) tensor.Tensor {
	out := tensor.Tensor{Name: t.Name, DataType: t.DataType, Shape: slices.Clone(t.Shape)}
	r, per := rows(t)
	if pick == nil || r != n || len(t.Shape) == 0 {
		out.Data = slices.Clone(t.Data)
		return out
	}
	out.Shape[0] = int64(len(pick))
	if t.DataType == tensor.Bytes {
		elems, err := tensor.BytesElements(t.Data, r*per)
		if err != nil {
			out.Shape[0] = 0
			return out
		}
		for _, i := range pick {
			for _, e := range elems[i*per : (i+1)*per] {
				out.Data = tensor.AppendBytesElement(out.Data, e)
			}
		}
		return out
	}
	stride := per * int64(t.DataType.Size())
	out.Data = make([]byte, 0, int64(len(pick))*stride)
	for _, i := range pick {
		out.Data = append(out.Data, t.Data[i*stride:(i+1)*stride]...)
	}
	return out
}
