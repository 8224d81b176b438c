package drift

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Defaults of Config.
const (
	DefaultWindow      = 10 * time.Minute
	DefaultFirstRows   = 10000
	DefaultMaxFeatures = 100
	DefaultThreshold   = 0.2
	// MinAlertRows is the fewest rows a window needs before it can raise
	// the alert: fewer make the statistics noise.
	MinAlertRows = 100
	// MaxFeatureLabel is the feature label of a tensor's most drifted
	// feature in onnxserve_drift.
	MaxFeatureLabel = "_max"
	// ClassFeature is the feature name of an output's predicted class.
	ClassFeature = "class"
)

// Config is one version's drift settings (the drift block of config.yaml).
// A plain value.
type Config struct {
	// Window is the span the statistics cover, in whole minutes, plus the
	// current minute so far [DefaultWindow].
	Window time.Duration
	// Sample is the share of rows monitored, in (0, 1] [1].
	Sample float64
	// FirstRows is how many rows a reference is learned from when the
	// version has no profile.json [DefaultFirstRows].
	FirstRows int64
	// MaxFeatures bounds the features per tensor exported as metrics
	// [DefaultMaxFeatures]; the report and the alert cover all of them.
	MaxFeatures int
	// AlertStat and AlertThreshold: the alert is raised while any feature's
	// AlertStat is above AlertThreshold [psi, DefaultThreshold].
	AlertStat      Stat
	AlertThreshold float64
	// Modes sets the feature mode of tensors by name.
	Modes Modes
	// Bins is the number of bins of a learned reference [DefaultBins].
	Bins int
}

func (c Config) withDefaults() Config {
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Sample <= 0 || c.Sample > 1 {
		c.Sample = 1
	}
	if c.FirstRows <= 0 {
		c.FirstRows = DefaultFirstRows
	}
	if c.MaxFeatures <= 0 {
		c.MaxFeatures = DefaultMaxFeatures
	}
	if c.AlertStat == "" {
		c.AlertStat = StatPSI
	}
	if c.AlertThreshold <= 0 {
		c.AlertThreshold = DefaultThreshold
	}
	return c
}

// The reference sources a report names.
const (
	SourceFile     = "file"
	SourceLearned  = "learned"
	SourceLearning = "learning"
)

// Monitor is the drift state of one model version: its reference, its
// window and its last statistics. Observe and Compute run on the tap's
// goroutine; Report and Validate may run anywhere. Safe for concurrent
// use.
type Monitor struct {
	model, version string
	cfg            Config
	inputs         []tensor.Spec
	outputs        []tensor.Spec
	log            *zap.Logger
	metrics        *Metrics
	// observed is set when the version has a drift block: the tap feeds
	// it. Without one the monitor holds the profile for validation only.
	observed bool

	ref     atomic.Pointer[reference]
	source  atomic.Value // string
	seen    atomic.Int64
	builder *Builder // learning, until ref is set; tap goroutine only

	mu          sync.Mutex // guards what follows
	win         *window
	sum         bucket
	last        Report
	lastCompute time.Time
	alert       bool
}

// reference is an installed profile with what counting needs of it.
type reference struct {
	prof  *Profile
	mons  []monTensor
	feats []feat
	bins  int
	// inputMon is each model input's index in mons, -1 for none.
	inputMon []int
}

// monTensor is one monitored tensor.
type monTensor struct {
	output bool
	pos    int // position among the model's inputs or outputs
	spec   tensor.Spec
	l      layout
	tp     *TensorProfile
	first  int // index of its first feature in reference.feats
	class  int // index of its class feature, -1 for none
}

// feat is one monitored feature and where its bins start.
type feat struct {
	t      int // monTensor
	name   string
	f      *Feature
	off    int
	lookup map[string]int // categorical bins by value
	gauges [3]prometheus.Gauge
}

// NewMonitor makes the monitor of one version. prof is its profile.json,
// nil to learn one from the first rows; a profile that does not match the
// model is an error naming the field.
func NewMonitor(model, version string, inputs, outputs []tensor.Spec, prof *Profile, cfg Config, log *zap.Logger, m *Metrics) (*Monitor, error) {
	cfg = cfg.withDefaults()
	mon := &Monitor{model: model, version: version, cfg: cfg, inputs: inputs, outputs: outputs, log: log, metrics: m}
	if prof == nil {
		b, err := NewBuilder(inputs, outputs, cfg.Modes, cfg.Bins)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrProfile, err)
		}
		mon.builder = b
		mon.source.Store(SourceLearning)
		mon.metrics.alert(model, version).Set(0)
		return mon, nil
	}
	if err := prof.Match(inputs, outputs, cfg.Modes); err != nil {
		return nil, err
	}
	mon.install(prof)
	mon.source.Store(SourceFile)
	mon.metrics.alert(model, version).Set(0)
	return mon, nil
}

// install makes prof the reference and starts the window.
func (m *Monitor) install(prof *Profile) {
	r := &reference{prof: prof}
	add := func(output bool, specs []tensor.Spec, tps []TensorProfile) {
		for pos, sp := range specs {
			i := slices.IndexFunc(tps, func(tp TensorProfile) bool { return tp.Name == sp.Name })
			if i < 0 {
				continue
			}
			tp := &tps[i]
			l, _ := newLayout(sp.Name, sp.Shape, tp.Mode)
			mt := monTensor{output: output, pos: pos, spec: sp, l: l, tp: tp, first: len(r.feats), class: -1}
			ti := len(r.mons)
			for j := range tp.Features {
				r.addFeat(m, ti, sp.Name, strconv.Itoa(j), &tp.Features[j], j < m.cfg.MaxFeatures)
			}
			if tp.Class != nil {
				mt.class = len(r.feats)
				r.addFeat(m, ti, sp.Name, ClassFeature, tp.Class, true)
			}
			r.mons = append(r.mons, mt)
		}
	}
	add(false, m.inputs, prof.Inputs)
	add(true, m.outputs, prof.Outputs)
	r.inputMon = make([]int, len(m.inputs))
	for i := range r.inputMon {
		r.inputMon[i] = slices.IndexFunc(r.mons, func(mt monTensor) bool { return !mt.output && mt.pos == i })
	}
	m.mu.Lock()
	m.win = newWindow(m.cfg.Window, len(r.feats), r.bins)
	m.sum = bucket{counts: make([]int64, r.bins), nan: make([]int64, len(r.feats)), inf: make([]int64, len(r.feats)), n: make([]int64, len(r.feats))}
	m.mu.Unlock()
	for _, mt := range r.mons {
		m.metrics.maxGauges(m.model, m.version, mt.spec.Name)
	}
	m.ref.Store(r)
}

func (r *reference) addFeat(m *Monitor, t int, tensorName, name string, f *Feature, export bool) {
	ft := feat{t: t, name: name, f: f, off: r.bins}
	if f.categorical() {
		ft.lookup = make(map[string]int, len(f.Values))
		for i, v := range f.Values {
			ft.lookup[v] = i
		}
	}
	if export {
		ft.gauges = m.metrics.gauges(m.model, m.version, tensorName, name)
	}
	r.bins += len(f.Ref)
	r.feats = append(r.feats, ft)
}

// Profile returns the reference profile and its source (file, learned),
// or nil while it is being learned.
func (m *Monitor) Profile() (*Profile, string) {
	r := m.ref.Load()
	if r == nil {
		return nil, SourceLearning
	}
	return r.prof, m.source.Load().(string)
}

// Observe adds one answered request's sampled rows (inputs and outputs in
// the model's declared order, each holding the same rows) observed at t.
// It runs on the tap's goroutine.
func (m *Monitor) Observe(at time.Time, inputs, outputs []tensor.Tensor) {
	n := int64(0)
	if len(inputs) > 0 {
		n, _ = rows(inputs[0])
	}
	m.seen.Add(n)
	r := m.ref.Load()
	if r == nil {
		m.learn(inputs, outputs)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.win.at(at)
	if b == nil {
		return
	}
	b.rows += n
	for ti := range r.mons {
		mt := &r.mons[ti]
		list := inputs
		if mt.output {
			list = outputs
		}
		if mt.pos >= len(list) {
			continue
		}
		r.count(b, mt, list[mt.pos])
	}
	if at.Sub(m.lastCompute) >= time.Second || at.Before(m.lastCompute) {
		m.compute(at, r)
	}
}

// learn feeds the builder and installs the learned profile once it has
// enough rows.
func (m *Monitor) learn(inputs, outputs []tensor.Tensor) {
	if err := m.builder.Add(inputs, outputs); err != nil {
		m.log.Debug("drift: reference rows skipped", zap.String("model", m.model), zap.String("version", m.version), zap.Error(err))
		return
	}
	if m.builder.rows < m.cfg.FirstRows {
		return
	}
	prof := m.builder.Profile()
	m.builder = nil
	m.source.Store(SourceLearned)
	m.install(prof)
	m.log.Info("drift reference learned from the first rows", zap.String("model", m.model), zap.String("version", m.version), zap.Int64("rows", prof.Rows))
}

// count adds the rows of t to bucket b.
func (r *reference) count(b *bucket, mt *monTensor, t tensor.Tensor) {
	n, per := rows(t)
	var elems [][]byte
	if t.DataType == tensor.Bytes {
		var err error
		if elems, err = tensor.BytesElements(t.Data, n*per); err != nil {
			return
		}
	}
	feats := r.feats[mt.first : mt.first+mt.l.features]
	if len(feats) == 0 && mt.l.features > 0 {
		return
	}
	for row := range n {
		for o := range per {
			fi := mt.l.feature(t, o)
			if fi >= len(feats) {
				continue
			}
			ft := &feats[fi]
			idx := mt.first + fi
			b.n[idx]++
			i := row*per + o
			if elems != nil {
				bin, ok := ft.lookup[string(elems[i])]
				if !ok {
					bin = len(ft.f.Values)
				}
				b.counts[ft.off+bin]++
				continue
			}
			x := value(t.DataType, t.Data, i)
			switch {
			case math.IsNaN(x):
				b.nan[idx]++
			case math.IsInf(x, 0):
				b.inf[idx]++
			default:
				b.counts[ft.off+ft.f.bin(x)]++
			}
		}
		if mt.class >= 0 && elems == nil && per >= 2 {
			ft := &r.feats[mt.class]
			c := argmax(t.DataType, t.Data, row*per, per)
			if c >= len(ft.f.Values) {
				c = len(ft.f.Values)
			}
			b.n[mt.class]++
			b.counts[ft.off+c]++
		}
	}
}

// Report is a version's drift report.
type Report struct {
	Model   string `json:"model"`
	Version string `json:"version"`
	// Window is the span the statistics cover.
	Window string `json:"window"`
	// Reference says where the reference came from: file, learned, or
	// learning (not enough rows yet).
	Reference     string `json:"reference"`
	ReferenceRows int64  `json:"reference_rows"`
	// Rows is the sampled rows in the window; RowsSeen every sampled row
	// since the version loaded.
	Rows     int64   `json:"rows"`
	RowsSeen int64   `json:"rows_seen"`
	Sample   float64 `json:"sample"`
	// Alert is true while AlertStat of some feature is above Threshold.
	Alert     bool    `json:"alert"`
	AlertStat Stat    `json:"alert_stat"`
	Threshold float64 `json:"threshold"`
	// Features are every monitored feature, the most drifted (by
	// AlertStat) first.
	Features []FeatureReport `json:"features"`
}

// FeatureReport is one feature's statistics over the window.
type FeatureReport struct {
	// Tensor is the input or output; Output says which.
	Tensor  string `json:"tensor"`
	Output  bool   `json:"output,omitempty"`
	Feature string `json:"feature"`
	Stats
	// Values is the values seen in the window; NaN and Inf their shares
	// in it.
	Values int64   `json:"values"`
	NaN    float64 `json:"nan"`
	Inf    float64 `json:"inf"`
}

// Compute recomputes the statistics over the window ending at now,
// updates the gauges and the alert, and returns the report.
func (m *Monitor) Compute(now time.Time) Report {
	r := m.ref.Load()
	m.mu.Lock()
	defer m.mu.Unlock()
	if r == nil {
		rep := m.base()
		rep.RowsSeen = m.seen.Load()
		return rep
	}
	m.compute(now, r)
	return m.last
}

// OutputDrift is the output drift over the window ending at now: the
// largest alert statistic over the output features, the rows the window
// holds and the reference's source. While the reference is being learned
// there is no value (source is SourceLearning). ok is false when the
// reference covers no output. It is the signal of a rollout's max_drift
// gate.
func (m *Monitor) OutputDrift(now time.Time) (value float64, rows int64, source string, ok bool) {
	prof, src := m.Profile()
	if prof == nil {
		return 0, 0, src, len(m.outputs) > 0
	}
	if len(prof.Outputs) == 0 {
		return 0, 0, src, false
	}
	rep := m.Compute(now)
	for _, f := range rep.Features {
		if f.Output {
			value = max(value, f.Of(rep.AlertStat))
		}
	}
	return value, rep.Rows, src, true
}

// base is a report with no statistics yet.
func (m *Monitor) base() Report {
	return Report{Model: m.model, Version: m.version, Window: m.cfg.Window.String(), Reference: m.source.Load().(string),
		Sample: m.cfg.Sample, AlertStat: m.cfg.AlertStat, Threshold: m.cfg.AlertThreshold, Features: []FeatureReport{}}
}

// compute runs with mu held.
func (m *Monitor) compute(now time.Time, r *reference) {
	m.lastCompute = now
	s := m.win.sum(now, &m.sum)
	rep := m.base()
	rep.ReferenceRows = r.prof.Rows
	rep.Rows = s.rows
	rep.RowsSeen = m.seen.Load()
	maxes := make([]Stats, len(r.mons))
	for i := range r.feats {
		ft := &r.feats[i]
		counts := s.counts[ft.off : ft.off+len(ft.f.Ref)]
		st := Compare(ft.f.Ref, counts)
		fr := FeatureReport{Tensor: r.mons[ft.t].spec.Name, Output: r.mons[ft.t].output, Feature: ft.name, Stats: st, Values: s.n[i]}
		if s.n[i] > 0 {
			fr.NaN = float64(s.nan[i]) / float64(s.n[i])
			fr.Inf = float64(s.inf[i]) / float64(s.n[i])
		}
		rep.Features = append(rep.Features, fr)
		mx := &maxes[ft.t]
		mx.PSI, mx.JS, mx.KS = max(mx.PSI, st.PSI), max(mx.JS, st.JS), max(mx.KS, st.KS)
		if ft.gauges[0] != nil {
			ft.gauges[0].Set(st.PSI)
			ft.gauges[1].Set(st.JS)
			ft.gauges[2].Set(st.KS)
		}
		if s.rows >= MinAlertRows && st.Of(m.cfg.AlertStat) > m.cfg.AlertThreshold {
			rep.Alert = true
		}
	}
	for i, mt := range r.mons {
		g := m.metrics.maxGauges(m.model, m.version, mt.spec.Name)
		g[0].Set(maxes[i].PSI)
		g[1].Set(maxes[i].JS)
		g[2].Set(maxes[i].KS)
	}
	slices.SortStableFunc(rep.Features, func(a, b FeatureReport) int {
		return cmp.Compare(b.Of(m.cfg.AlertStat), a.Of(m.cfg.AlertStat))
	})
	if rep.Alert != m.alert {
		m.alert = rep.Alert
		v := 0.0
		if rep.Alert {
			v = 1
		}
		m.metrics.alert(m.model, m.version).Set(v)
		top := rep.Features[0]
		m.log.Warn("drift alert changed", zap.String("model", m.model), zap.String("version", m.version), zap.Bool("alert", rep.Alert),
			zap.String("stat", string(m.cfg.AlertStat)), zap.Float64("threshold", m.cfg.AlertThreshold),
			zap.String("tensor", top.Tensor), zap.String("feature", top.Feature), zap.Float64("value", top.Of(m.cfg.AlertStat)))
	}
	m.last = rep
}
