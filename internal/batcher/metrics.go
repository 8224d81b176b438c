package batcher

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultDurationBuckets are the queue and compute duration histogram
// bounds, in seconds, used when NewMetrics is given none: from 100µs, where
// a queue wait of a lightly loaded server lies, to 10s.
var DefaultDurationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// batchSizeBuckets are powers of two, the sizes models are usually
// configured with.
var batchSizeBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}

// Metrics holds the batcher series of every model version in one process.
// Create it once per registry and pass it to each New. It is safe for
// concurrent use.
type Metrics struct {
	queueDuration   *prometheus.HistogramVec
	computeDuration *prometheus.HistogramVec
	batchSize       *prometheus.HistogramVec
	isolations      *prometheus.CounterVec
	rejections      *prometheus.CounterVec
	queueDepth      *prometheus.Desc
	inflight        *prometheus.Desc

	mu sync.Mutex
	// live lists the open batchers, read at scrape time for the gauges.
	live map[*Batcher]struct{}
	// refs counts open batchers per (model, version): a version reloaded in
	// place has two for a while, and its series must outlive the old one.
	refs map[labels]int
}

type labels struct{ model, version string }

// NewMetrics creates the batcher metrics and registers them on reg (nil:
// not registered). buckets bounds the queue and compute duration
// histograms, in seconds; nil means DefaultDurationBuckets. Registering
// twice on one registry fails.
func NewMetrics(reg prometheus.Registerer, buckets []float64) (*Metrics, error) {
	if buckets == nil {
		buckets = DefaultDurationBuckets
	}
	names := []string{"model", "version"}
	m := &Metrics{
		queueDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onnxserve_queue_duration_seconds",
			Help:    "Time a request waited in the batcher before its batch started.",
			Buckets: buckets,
		}, names),
		computeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onnxserve_compute_duration_seconds",
			Help:    "Time one batch spent in the model runner.",
			Buckets: buckets,
		}, names),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onnxserve_batch_size",
			Help:    "Rows per executed batch.",
			Buckets: batchSizeBuckets,
		}, names),
		isolations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onnxserve_batch_isolations_total",
			Help: "Failed batches of several requests whose requests were re-run in smaller groups to pin the failure on the requests at fault.",
		}, names),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onnxserve_model_rejections_total",
			Help: "Requests the model failed on alone while the version answers other input, answered as the client's fault (400 / INVALID_ARGUMENT).",
		}, names),
		queueDepth: prometheus.NewDesc("onnxserve_queue_depth",
			"Requests waiting in the batcher now.", names, nil),
		inflight: prometheus.NewDesc("onnxserve_inflight_requests",
			"Requests admitted by the batcher and not yet answered.", names, nil),
		live: make(map[*Batcher]struct{}),
		refs: make(map[labels]int),
	}
	if reg != nil {
		if err := reg.Register(collector{m}); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// collector exposes Metrics to a registry without adding Describe and
// Collect to Metrics' own API.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	c.m.queueDuration.Describe(ch)
	c.m.computeDuration.Describe(ch)
	c.m.batchSize.Describe(ch)
	c.m.isolations.Describe(ch)
	c.m.rejections.Describe(ch)
	ch <- c.m.queueDepth
	ch <- c.m.inflight
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	m.queueDuration.Collect(ch)
	m.computeDuration.Collect(ch)
	m.batchSize.Collect(ch)
	m.isolations.Collect(ch)
	m.rejections.Collect(ch)

	// The gauges read the batchers' own counters; batchers sharing labels
	// are summed, since a series may be reported only once.
	type counts struct{ queued, inflight int }
	sums := make(map[labels]counts)
	m.mu.Lock()
	for b := range m.live {
		l := labels{b.cfg.Model, b.cfg.Version}
		s := sums[l]
		s.queued += b.QueueDepth()
		s.inflight += b.Inflight()
		sums[l] = s
	}
	m.mu.Unlock()
	for l, s := range sums {
		ch <- prometheus.MustNewConstMetric(m.queueDepth, prometheus.GaugeValue, float64(s.queued), l.model, l.version)
		ch <- prometheus.MustNewConstMetric(m.inflight, prometheus.GaugeValue, float64(s.inflight), l.model, l.version)
	}
}

// observers are one batcher's histogram and counter children, resolved
// once.
type observers struct {
	queue, compute, batch  prometheus.Observer
	isolations, rejections incrementer
}

// incrementer is the part of prometheus.Counter the batcher uses.
type incrementer interface{ Inc() }

type discard struct{}

func (discard) Observe(float64) {}
func (discard) Inc()            {}

// attach adds b to the live set and resolves its histogram children. It is
// nil-safe: without Metrics the observations are discarded.
func (m *Metrics) attach(b *Batcher) observers {
	if m == nil {
		return observers{discard{}, discard{}, discard{}, discard{}, discard{}}
	}
	l := labels{b.cfg.Model, b.cfg.Version}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live[b] = struct{}{}
	m.refs[l]++
	return observers{
		queue:      m.queueDuration.WithLabelValues(l.model, l.version),
		compute:    m.computeDuration.WithLabelValues(l.model, l.version),
		batch:      m.batchSize.WithLabelValues(l.model, l.version),
		isolations: m.isolations.WithLabelValues(l.model, l.version),
		rejections: m.rejections.WithLabelValues(l.model, l.version),
	}
}

// detach removes b; the last batcher of a version takes the version's
// histogram series with it, so an unloaded version leaves none behind.
func (m *Metrics) detach(b *Batcher) {
	if m == nil {
		return
	}
	l := labels{b.cfg.Model, b.cfg.Version}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.live, b)
	if m.refs[l]--; m.refs[l] > 0 {
		return
	}
	delete(m.refs, l)
	m.queueDuration.DeleteLabelValues(l.model, l.version)
	m.computeDuration.DeleteLabelValues(l.model, l.version)
	m.batchSize.DeleteLabelValues(l.model, l.version)
	m.isolations.DeleteLabelValues(l.model, l.version)
	m.rejections.DeleteLabelValues(l.model, l.version)
}
