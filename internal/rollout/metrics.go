package rollout

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the rollout collectors. Safe for concurrent use; a nil
// *Metrics records nothing. Label values are bounded: models and versions
// are the server's, states and reasons fixed keywords or gate names.
type Metrics struct {
	percent     *prometheus.GaugeVec
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
}

// NewMetrics registers the rollout collectors on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		percent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "onnxserve_rollout_percent",
			Help: "Share of a model's unversioned traffic, in percent, that a rollout gives the candidate and the baseline version.",
		}, []string{"model", "version"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "onnxserve_rollout_state",
			Help: "1 for the current state of a model's rollout (idle, shadow, progressing, promoted, rolled_back, held).",
		}, []string{"model", "state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onnxserve_rollout_transitions_total",
			Help: "Rollout decisions by the state left, the state entered and the reason (started, passed, a gate's name, promote, abort, candidate_removed).",
		}, []string{"model", "from", "to", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.percent, m.state, m.transitions} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// set shows st's state and weights.
func (m *Metrics) set(st Status) {
	if m == nil {
		return
	}
	for _, p := range allPhases {
		if p == st.Phase {
			m.state.WithLabelValues(st.Model, string(p)).Set(1)
		} else {
			m.state.DeleteLabelValues(st.Model, string(p))
		}
	}
	m.percent.DeletePartialMatch(prometheus.Labels{"model": st.Model})
	total := 0
	for _, w := range st.Weights {
		total += w
	}
	if total == 0 {
		return
	}
	for v, w := range st.Weights {
		m.percent.WithLabelValues(st.Model, v).Set(float64(w) * 100 / float64(total))
	}
}

// transition counts one decision and shows the new state.
func (m *Metrics) transition(st Status, from, to Phase, reason string) {
	if m == nil {
		return
	}
	m.transitions.WithLabelValues(st.Model, string(from), string(to), reason).Inc()
	m.set(st)
}
