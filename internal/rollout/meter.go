package rollout

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onnxserve/onnxserve/internal/serving"
)

// Latency buckets: bounds grow by latencyGrowth from latencyFirst, so a
// p99 read from them is within latencyGrowth of the true value.
const (
	latencyFirst   = 50 * time.Microsecond
	latencyGrowth  = 1.1
	latencyBuckets = 160 // up to about 50µs·1.1^159 ≈ 190s
)

// histogram is a cumulative count of latencies per bucket; the last bucket
// takes everything longer. A plain value: two readings subtract.
type histogram [latencyBuckets]int64

// bucketOf returns the bucket of d.
func bucketOf(d time.Duration) int {
	if d <= latencyFirst {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(latencyFirst)) / math.Log(latencyGrowth)))
	return min(i, latencyBuckets-1)
}

// bound returns the upper bound of bucket i.
func bound(i int) time.Duration {
	return time.Duration(float64(latencyFirst) * math.Pow(latencyGrowth, float64(i)))
}

// quantile returns the upper bound of the bucket holding quantile q of
// the counted latencies, 0 when none is counted.
func (h *histogram) quantile(q float64) time.Duration {
	var total int64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i, c := range h {
		seen += c
		if seen >= rank {
			return bound(i)
		}
	}
	return bound(latencyBuckets - 1)
}

// Figures are one version's cumulative counts as the rollout reads them:
// two readings subtract into a window. A plain value.
type Figures struct {
	// Requests answered by the version as primary, and how many of them
	// were errors: 5xx answers and model rejections.
	Requests, Errors int64
	// Latency is the server-side time from arrival to answer.
	Latency histogram
}

// sub returns f minus an earlier reading.
func (f Figures) sub(earlier Figures) Figures {
	out := Figures{Requests: f.Requests - earlier.Requests, Errors: f.Errors - earlier.Errors}
	for i := range f.Latency {
		out.Latency[i] = f.Latency[i] - earlier.Latency[i]
	}
	return out
}

// Meter is the rollout's tap: it counts, per version of each watched
// model, the requests answered, the errors among them and their latency.
// Register it with serving.AddTap. Safe for concurrent use.
type Meter struct {
	watched atomic.Pointer[map[string]bool]

	mu   sync.Mutex
	figs map[versionKey]*Figures
}

type versionKey struct{ model, version string }

// observation is what Meter keeps of one answered request.
type observation struct {
	key     versionKey
	err     bool
	latency time.Duration
}

// NewMeter returns a Meter watching no model.
func NewMeter() *Meter {
	m := &Meter{figs: map[versionKey]*Figures{}}
	m.watched.Store(&map[string]bool{})
	return m
}

// watch sets the models whose versions are counted.
func (m *Meter) watch(models []string) {
	w := make(map[string]bool, len(models))
	for _, n := range models {
		w[n] = true
	}
	m.watched.Store(&w)
}

// Keep implements serving.Tap: primary answers of watched models' versions.
func (m *Meter) Keep(r *serving.Record) (observation, bool) {
	if r.Arm != serving.ArmPrimary || r.Version == "" || !(*m.watched.Load())[r.Model] {
		return observation{}, false
	}
	bad := r.Class == serving.ClassServer || (r.Err != nil && errors.Is(r.Err, serving.ErrRejected))
	return observation{key: versionKey{r.Model, r.Version}, err: bad, latency: time.Since(r.Arrival)}, true
}

// Consume implements serving.Tap.
func (m *Meter) Consume(o observation) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.figs[o.key]
	if f == nil {
		f = &Figures{}
		m.figs[o.key] = f
	}
	f.Requests++
	if o.err {
		f.Errors++
	}
	f.Latency[bucketOf(o.latency)]++
}

// forget drops a model's figures once no rollout of it runs.
func (m *Meter) forget(model string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.figs {
		if k.model == model {
			delete(m.figs, k)
		}
	}
}

// Figures returns a version's cumulative figures.
func (m *Meter) Figures(model, version string) Figures {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.figs[versionKey{model, version}]; f != nil {
		return *f
	}
	return Figures{}
}

// Register adds m to s as the tap named "rollout".
func (m *Meter) Register(s *serving.Server) error {
	return serving.AddTap[observation](s, "rollout", 0, m)
}
