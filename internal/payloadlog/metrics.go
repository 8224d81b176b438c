package payloadlog

import "github.com/prometheus/client_golang/prometheus"

// metrics are the payload log's collectors; every series is per sink, a
// label set as small as the sinks configured.
type metrics struct {
	events, dropped, errors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onnxserve_payload_log_events_total",
			Help: "Payload events a sink delivered (written to its file, accepted by its receiver).",
		}, []string{"sink"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onnxserve_payload_log_dropped_total",
			Help: "Payload events a sink lost: its queue was full, delivery failed after its retries, or shutdown's deadline passed first.",
		}, []string{"sink"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onnxserve_payload_log_errors_total",
			Help: "Payload events whose delivery failed after the sink's retries (a write error, a receiver down or answering an error); each is dropped too.",
		}, []string{"sink"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.events, m.dropped, m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
