package transport

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Protocols, the values of the protocol label.
const (
	ProtocolHTTP = "http"
	ProtocolGRPC = "grpc"
)

// Observer records every finished inference request: a Prometheus counter
// by outcome and a duration histogram, per model, version and protocol, and
// one access-log line. It is safe for concurrent use.
type Observer struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	log      *zap.Logger

	children sync.Map // childKey → *child, so the hot path does no label hashing
	seen     atomic.Uint64
}

type childKey struct {
	model, version, protocol string
	code                     int
}

type child struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// infoSample logs one request in this many at info level when debug is off.
const infoSample = 1000

// NewObserver registers the request collectors on reg. buckets are the
// duration histogram's upper bounds in seconds.
func NewObserver(reg prometheus.Registerer, buckets []float64, log *zap.Logger) (*Observer, error) {
	o := &Observer{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onnxserve_requests_total",
			Help: "Finished inference requests by outcome; code is the HTTP-style status (gRPC codes mapped through the same table).",
		}, []string{"model", "version", "protocol", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onnxserve_request_duration_seconds",
			Help:    "Time from a request's arrival to its response being written.",
			Buckets: buckets,
		}, []string{"model", "version", "protocol"}),
		log: log,
	}
	for _, c := range []prometheus.Collector{o.requests, o.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Observe records one finished request. model and version must be the
// canonical labels the serving core returned with the answer (Response, or
// serving.Labels of the error): names of loaded models and versions, never
// request content, so a flood of made-up names cannot grow the series
// without bound. id is the request id.
func (o *Observer) Observe(protocol, model, version, id string, code int, d time.Duration) {
	k := childKey{model, version, protocol, code}
	c, ok := o.children.Load(k)
	if !ok {
		c, _ = o.children.LoadOrStore(k, &child{
			requests: o.requests.WithLabelValues(model, version, protocol, strconv.Itoa(code)),
			duration: o.duration.WithLabelValues(model, version, protocol),
		})
	}
	ch := c.(*child)
	ch.requests.Inc()
	ch.duration.Observe(d.Seconds())
	o.access(protocol, model, version, id, code, d)
}

// access writes the access-log line: every request at debug level, one in
// infoSample at info, and every server-side failure at error level. 503
// (not ready, shutting down) and 504 (the client's own deadline passed)
// are expected under load and would flood the log at error level.
func (o *Observer) access(protocol, model, version, id string, code int, d time.Duration) {
	level := zapcore.DebugLevel
	switch {
	case code >= 500 && code != 503 && code != 504:
		level = zapcore.ErrorLevel
	case o.seen.Add(1)%infoSample == 0:
		level = zapcore.InfoLevel
	}
	if ce := o.log.Check(level, "request"); ce != nil {
		ce.Write(zap.String("protocol", protocol), zap.String("model", model), zap.String("version", version),
			zap.Int("code", code), zap.Duration("duration", d), zap.String("request_id", id))
	}
}

// ForgetVersion drops every series of a version that was unloaded, so no
// stale series outlive it.
func (o *Observer) ForgetVersion(model, version string) {
	o.children.Range(func(k, _ any) bool {
		if ck := k.(childKey); ck.model == model && ck.version == version {
			o.children.Delete(k)
		}
		return true
	})
	l := prometheus.Labels{"model": model, "version": version}
	o.requests.DeletePartialMatch(l)
	o.duration.DeletePartialMatch(l)
}
