package drift

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the drift and validation series of every version. Safe for
// concurrent use.
type Metrics struct {
	drift    *prometheus.GaugeVec
	alerts   *prometheus.GaugeVec
	failures *prometheus.CounterVec
}

// NewMetrics makes the series and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "onnxserve_drift",
			Help: "Drift of a feature over the drift window against the version's reference, by statistic (psi, js, ks; computed on the reference bins); feature _max is the tensor's largest.",
		}, []string{"model", "version", "input", "feature", "stat"}),
		alerts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "onnxserve_drift_alert",
			Help: "1 while the drift alert statistic of some feature is above its threshold (drift.alert), else 0.",
		}, []string{"model", "version"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onnxserve_validation_failures_total",
			Help: "Input values that broke a validation rule (nan, inf, range), counted or rejected.",
		}, []string{"model", "version", "input", "rule"}),
	}
	if reg != nil {
		reg.MustRegister(m.drift, m.alerts, m.failures)
	}
	return m
}

var statNames = [3]Stat{StatPSI, StatJS, StatKS}

func (m *Metrics) gauges(model, version, input, feature string) [3]prometheus.Gauge {
	var g [3]prometheus.Gauge
	for i, st := range statNames {
		g[i] = m.drift.WithLabelValues(model, version, input, feature, string(st))
	}
	return g
}

func (m *Metrics) maxGauges(model, version, input string) [3]prometheus.Gauge {
	return m.gauges(model, version, input, MaxFeatureLabel)
}

func (m *Metrics) alert(model, version string) prometheus.Gauge {
	return m.alerts.WithLabelValues(model, version)
}

func (m *Metrics) failure(model, version, input, rule string) prometheus.Counter {
	return m.failures.WithLabelValues(model, version, input, rule)
}

// forget drops every series of a version.
func (m *Metrics) forget(model, version string) {
	l := prometheus.Labels{"model": model, "version": version}
	m.drift.DeletePartialMatch(l)
	m.alerts.DeletePartialMatch(l)
	m.failures.DeletePartialMatch(l)
}
