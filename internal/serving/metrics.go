package serving

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the serving core's collectors: each version's lifecycle
// state. Safe for concurrent use; a nil *Metrics records nothing.
type Metrics struct {
	state *prometheus.GaugeVec
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
	if err := reg.Register(m.state); err != nil {
		return nil, err
	}
	return m, nil
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
	m.state.DeletePartialMatch(prometheus.Labels{"model": model, "version": version})
}
