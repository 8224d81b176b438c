package quality

import (
	"errors"
	"hash/fnv"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Defaults of Config.
const (
	// DefaultMaxBytes bounds the prediction store when Config.MaxBytes is 0.
	DefaultMaxBytes = 1 << 30
	// DefaultFlushInterval is how long a kept prediction may wait before it
	// is committed to the store.
	DefaultFlushInterval = 200 * time.Millisecond
	// DefaultSweepInterval is how often expired entries are deleted.
	DefaultSweepInterval = time.Minute
)

// flushBatch commits the pending predictions at once when this many wait.
const flushBatch = 8192

// maxPending bounds the predictions waiting for a commit: while commits
// fail, predictions beyond it are dropped and counted as evicted
// ("unwritable").
const maxPending = 4 * flushBatch

// Config holds the loop's settings.
type Config struct {
	// StateDir is the folder of the prediction store (created if missing).
	StateDir string
	// MaxBytes bounds the bytes of keys and values in the store; the
	// entries nearest their deadline are evicted first. [DefaultMaxBytes]
	MaxBytes int64
	// Resolve returns a model's Spec; required.
	Resolve Resolver
	// FlushInterval [DefaultFlushInterval] and SweepInterval
	// [DefaultSweepInterval] pace the store's background work.
	FlushInterval, SweepInterval time.Duration
	// Now is the clock [time.Now]; tests move it.
	Now func() time.Time
}

// Monitor is the model-quality loop: a serving tap that keeps sampled
// predictions in the store, the feedback join, the quality counters and
// the report. Safe for concurrent use; Close stops it.
type Monitor struct {
	cfg   Config
	log   *zap.Logger
	m     *metrics
	store *store

	specs sync.Map // model name → *resolved

	progress progress

	// predicted caches onnxserve_predictions_total children.
	predMu    sync.Mutex
	predicted map[predKeyLabel]prometheus.Counter

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type predKeyLabel struct {
	model, version string
	class          int32
}

// New opens the store in cfg.StateDir, registers the metrics on reg and
// starts the goroutine that commits and expires predictions.
func New(cfg Config, log *zap.Logger, reg prometheus.Registerer) (*Monitor, error) {
	if cfg.Resolve == nil || cfg.StateDir == "" {
		return nil, errors.New("quality: a state dir and a resolver are required")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	q := &Monitor{cfg: cfg, log: log, predicted: map[predKeyLabel]prometheus.Counter{},
		stop: make(chan struct{}), done: make(chan struct{})}
	var err error
	q.m, err = newMetrics(reg, func() float64 {
		if q.store == nil {
			return 0
		}
		return float64(q.store.size())
	})
	if err != nil {
		return nil, err
	}
	q.store, err = openStore(cfg.StateDir, cfg.MaxBytes, func(reason string, n int) {
		q.m.evicted.WithLabelValues(reason).Add(float64(n))
	})
	if err != nil {
		return nil, err
	}
	go q.run()
	return q, nil
}

// Close commits what is pending, stops the background goroutine and
// closes the store. Register the tap's Close (serving.Server.Close) first,
// so nothing is consumed after it.
func (q *Monitor) Close() error {
	q.once.Do(func() { close(q.stop) })
	<-q.done
	return q.store.close()
}

func (q *Monitor) run() {
	defer close(q.done)
	flush := time.NewTicker(q.cfg.FlushInterval)
	defer flush.Stop()
	sweep := time.NewTicker(q.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-flush.C:
			if q.store.pendingLen() > 0 {
				q.storeErr(q.store.flush())
			}
		case <-sweep.C:
			q.storeErr(q.store.expire(q.cfg.Now()))
		}
	}
}

func (q *Monitor) storeErr(err error) {
	if err != nil {
		q.m.storeErrors.Inc()
		q.log.Error("prediction store", zap.Error(err))
	}
}

// spec returns model's Spec from the cache, resolving it when missing or
// older than specRefresh at now. The request path passes its arrival time,
// which it already has: reading the clock again costs more on some
// virtual machines than the rest of Keep.
func (q *Monitor) spec(model string, now time.Time) (*Spec, error) {
	if v, ok := q.specs.Load(model); ok {
		if r := v.(*resolved); now.Sub(r.at) < specRefresh {
			return &r.spec, r.err
		}
	}
	s, err := q.cfg.Resolve(model)
	if errors.Is(err, serving.ErrModelNotFound) {
		// An unknown model is not cached: a client cannot fill the map.
		return nil, err
	}
	if err != nil && !errors.Is(err, ErrNotMonitored) {
		// A monitoring block that cannot be used (a labels file missing)
		// is said once, when it starts failing, not found out only by
		// whoever reads the quality report; it is cached like a good one,
		// so it is not resolved again on every request.
		if old, ok := q.specs.Load(model); !ok || old.(*resolved).err == nil || old.(*resolved).err.Error() != err.Error() {
			q.log.Warn("monitoring block unusable: no prediction of the model is kept", zap.String("model", model), zap.Error(err))
		}
	}
	r := &resolved{spec: s, err: err, at: now}
	q.specs.Store(model, r)
	return &r.spec, r.err
}

// Kept is what the tap copies of one answered request of a monitored
// model: each row's prediction. A plain value.
type Kept struct {
	p    prediction
	spec *Spec // the model's, as Keep read it
	// store: the request was sampled and its prediction goes to the store.
	store bool
}

// Keep reads the predictions of an answered request of a monitored
// model: the argmax of each row (classification), the positive-class
// score against the threshold (binary), or the value (regression). It runs
// on the request path and copies only those numbers (serving.Tap).
func (q *Monitor) Keep(r *serving.Record) (Kept, bool) {
	if r.Class != serving.ClassOK || r.Model == "" || r.Version == "" || len(r.Outputs) == 0 || r.ID == "" || len(r.ID) > MaxIDLen {
		return Kept{}, false
	}
	spec, err := q.spec(r.Model, r.Arrival)
	if err != nil {
		return Kept{}, false
	}
	out, ok := pickOutput(r.Outputs, spec.Output)
	if !ok {
		return Kept{}, false
	}
	p := prediction{model: r.Model, version: r.Version, task: spec.Task, at: r.Arrival.UnixNano()}
	if !read(spec, out, &p) {
		return Kept{}, false
	}
	k := Kept{p: p, spec: spec, store: sampled(r.ID, spec.Sample)}
	if k.store {
		q.progress.kept.Add(1)
		if k.p.uid, k.p.hasUID = parseUUID(r.ID); !k.p.hasUID {
			k.p.id = strings.Clone(r.ID)
		}
		k.p.expires = p.at + int64(spec.TTL)
		k.p.deadline = k.p.expires + int64(expiredGrace(spec.TTL))
	}
	return k, true
}

// expiredGrace is how long a prediction past its TTL is kept, so late
// feedback is told "expired" rather than "unknown_id": the TTL again, at
// most a day.
func expiredGrace(ttl time.Duration) time.Duration { return min(ttl, 24*time.Hour) }

// Consume counts a kept request's predictions and queues it for the
// store (serving.Tap).
func (q *Monitor) Consume(k Kept) {
	if k.p.task != TaskRegression {
		q.predMu.Lock()
		for _, c := range k.p.pred {
			key := predKeyLabel{k.p.model, k.p.version, c}
			ctr, ok := q.predicted[key]
			if !ok {
				label := classLabel(k.spec, c)
				ctr = q.m.predictions.WithLabelValues(k.p.model, k.p.version, label)
				if c < maxClassLabels {
					q.predicted[key] = ctr
				}
			}
			ctr.Inc()
		}
		q.predMu.Unlock()
	}
	if !k.store {
		return
	}
	n, ok := q.store.add(k.p, maxPending)
	q.progress.advance()
	if !ok {
		// Commits have failed for a while (each failure is counted and
		// logged): memory is not where the predictions wait.
		q.m.evicted.WithLabelValues("unwritable").Inc()
		return
	}
	if n%flushBatch == 0 {
		// Each flushBatch more, not each prediction past it: while
		// commits fail, one try a batch (and the ticker's) is enough.
		q.storeErr(q.store.flush())
	}
}

// sampled decides by the request id, so every version that answers one
// request (primary and shadow) decides alike.
func sampled(id string, share float64) bool {
	if share >= 1 {
		return true
	}
	if share <= 0 {
		return false
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	// FNV's last bytes barely reach its high bits; the splitmix64
	// finaliser spreads them, so ids differing at the end sample fairly.
	x := h.Sum64()
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x) < share*math.MaxUint64
}

// pickOutput returns the output named name, or the only output when name
// is "".
func pickOutput(outs []tensor.Tensor, name string) (tensor.Tensor, bool) {
	if name == "" {
		if len(outs) == 1 {
			return outs[0], true
		}
		return tensor.Tensor{}, false
	}
	for _, t := range outs {
		if t.Name == name {
			return t, true
		}
	}
	return tensor.Tensor{}, false
}

// layout returns rows and values per row of an output: a tensor of rank
// 2 or more is rows × the rest; rank 1 is one row of classes
// (classification) or one value per row (binary, regression); rank 0 is
// one value.
func layout(t tensor.Tensor, task Task) (rows, cols int, ok bool) {
	n, err := tensor.ElementCount(t.Shape)
	if err != nil || n == 0 {
		return 0, 0, false
	}
	switch {
	case len(t.Shape) >= 2:
		rows = int(t.Shape[0])
	case len(t.Shape) == 1 && task == TaskClassification:
		rows = 1
	default:
		rows = int(n)
	}
	if rows == 0 {
		return 0, 0, false
	}
	return rows, int(n) / rows, true
}

// read fills p's rows from output t; false when t does not fit the task.
func read(spec *Spec, t tensor.Tensor, p *prediction) bool {
	rows, cols, ok := layout(t, spec.Task)
	if !ok || !numeric(t.DataType) || len(t.Data) < rows*cols*t.DataType.Size() {
		return false
	}
	switch spec.Task {
	case TaskClassification:
		p.classes = int32(cols)
		p.pred = make([]int32, rows)
		for r := range rows {
			best, arg := math.Inf(-1), 0
			for c := range cols {
				if v := valueAt(t, r*cols+c); v > best {
					best, arg = v, c
				}
			}
			p.pred[r] = int32(arg)
		}
	case TaskBinary:
		if cols > 2 {
			return false
		}
		p.classes = 2
		p.pred, p.score = make([]int32, rows), make([]float64, rows)
		for r := range rows {
			s := valueAt(t, r*cols)
			if cols == 2 {
				s = valueAt(t, r*cols+spec.PositiveClass)
			}
			p.score[r] = s
			p.pred[r] = int32(1 - spec.PositiveClass)
			if s >= spec.Threshold {
				p.pred[r] = int32(spec.PositiveClass)
			}
		}
	case TaskRegression:
		if cols != 1 {
			return false
		}
		p.value = make([]float64, rows)
		for r := range rows {
			p.value[r] = valueAt(t, r)
		}
	default:
		return false
	}
	return true
}

func numeric(d tensor.DataType) bool {
	return d.Valid() && d != tensor.Bytes && d != tensor.Bool
}

// ForgetVersion deletes the quality series of a version that was
// unloaded, as the serving core's own series go; its labelled rows stay
// in the store until they expire.
func (q *Monitor) ForgetVersion(model, version string) {
	q.predMu.Lock()
	for k := range q.predicted {
		if k.model == model && k.version == version {
			delete(q.predicted, k)
		}
	}
	q.predMu.Unlock()
	q.m.forget(model, version)
}
