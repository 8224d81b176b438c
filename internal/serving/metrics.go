package serving

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/onnxserve/onnxserve/internal/batcher"
)

// Metrics holds the serving core's collectors: each version's lifecycle
// state, routing decisions and shadow outcomes. Safe for concurrent use; a
// nil *Metrics records nothing.
type Metrics struct {
	state  *prometheus.GaugeVec
	routed *prometheus.CounterVec
	shadow *prometheus.CounterVec
	taps   *prometheus.CounterVec
	// seqs holds the sequence series (sequence_batching).
	seqs *batcher.SequenceMetrics
}

// versionCounters are one version's counters, resolved when it loads so the
// request path does no label lookups.
type versionCounters struct {
	routed prometheus.Counter // requests the router sent here as primary
	shadow shadowCounters
}

type shadowCounters struct {
	mirrored, dropped, agreed, disagreed, failed prometheus.Counter
}

// counters resolves a version's children; with no Metrics they count into
// unregistered counters nobody reads.
func (m *Metrics) counters(model, version string) versionCounters {
	if m == nil {
		c := func() prometheus.Counter { return prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"}) }
		return versionCounters{routed: c(), shadow: shadowCounters{c(), c(), c(), c(), c()}}
	}
	sh := func(result string) prometheus.Counter { return m.shadow.WithLabelValues(model, version, result) }
	return versionCounters{
		routed: m.routed.WithLabelValues(model, version, "primary"),
		shadow: shadowCounters{
			mirrored:  m.routed.WithLabelValues(model, version, "shadow"),
			dropped:   sh("dropped"),
			agreed:    sh("agree"),
			disagreed: sh("disagree"),
			failed:    sh("error"),
		},
	}
}

var allStates = []State{StateReady, StateLoading, StateUnavailable, StateUnloading}

// NewMetrics registers the serving collectors on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "onnxserve_model_state",
			Help: "1 for the current lifecycle state of each model version (READY, LOADING, UNAVAILABLE, UNLOADING).",
		}, []string{"model", "version", "state"}),
	}
	m.routed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onnxserve_traffic_routed_total",
		Help: "Routing decisions for requests that named no version; arm is primary (answered) or shadow (mirrored copy).",
	}, []string{"model", "version", "arm"})
	m.shadow = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onnxserve_shadow_requests_total",
		Help: "Mirrored requests by outcome: agree or disagree with the primary's answer, error, or dropped because the shadow queue was full.",
	}, []string{"model", "version", "result"})
	m.taps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onnxserve_tap_dropped_total",
		Help: "Answered requests a tap did not get because its queue was full.",
	}, []string{"tap"})
	for _, c := range []prometheus.Collector{m.state, m.routed, m.shadow, m.taps} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	var err error
	if m.seqs, err = batcher.NewSequenceMetrics(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// tapDropped returns a tap's drop counter; with no Metrics it counts into
// a counter nobody reads.
func (m *Metrics) tapDropped(name string) prometheus.Counter {
	if m == nil {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"})
	}
	return m.taps.WithLabelValues(name)
}

// sequences returns the sequence metrics, nil without Metrics.
func (m *Metrics) sequences() *batcher.SequenceMetrics {
	if m == nil {
		return nil
	}
	return m.seqs
}

// setState marks st as the version's only current state.
func (m *Metrics) setState(model, version string, st State) {
	if m == nil {
		return
	}
	for _, s := range allStates {
		if s == st {
			m.state.WithLabelValues(model, version, string(s)).Set(1)
		} else {
			m.state.DeleteLabelValues(model, version, string(s))
		}
	}
}

// deleteVersion drops every series of a version that left the repository.
func (m *Metrics) deleteVersion(model, version string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"model": model, "version": version}
	m.state.DeletePartialMatch(l)
	m.routed.DeletePartialMatch(l)
	m.shadow.DeletePartialMatch(l)
	m.seqs.DeleteVersion(model, version)
}
