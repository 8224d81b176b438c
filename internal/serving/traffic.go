package serving

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// trafficSpec returns the model's configured traffic block.
func (m *model) trafficSpec() *repository.Traffic {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.Traffic
}

// TrafficView is the effective routing of a model, as GET
// /v2/models/{m}/traffic reports it.
type TrafficView struct {
	// Traffic is the configured block; nil Split means newest takes all.
	Traffic repository.Traffic
	// Arms lists every arm with its weight, readiness and the share it
	// gets now, after unready arms' shares are redistributed.
	Arms []ArmView
	// Shadow is the shadow version's state, when one is configured.
	Shadow *ShadowView
}

// ArmView is one arm of a split.
type ArmView struct {
	Version string
	Weight  int
	Ready   bool
	Percent float64
}

// ShadowView is the configured shadow and whether it can take copies now.
type ShadowView struct {
	Version string
	Percent int
	Ready   bool
}

// Traffic returns the model's effective routing.
func (s *Server) Traffic(name string) (TrafficView, error) {
	m, err := s.model(name)
	if err != nil {
		return TrafficView{}, err
	}
	set := m.serving.Load()
	var view TrafficView
	if set.traffic != nil {
		view.Traffic = set.traffic.Clone()
	} else {
		view.Traffic.StickyKey = set.stickyKey
	}
	for _, a := range set.route.Effective() {
		view.Arms = append(view.Arms, ArmView{Version: strconv.FormatInt(a.Version, 10), Weight: a.Weight, Ready: a.Ready, Percent: a.Percent})
	}
	if sh, ok := set.route.EffectiveShadow(); ok {
		view.Shadow = &ShadowView{Version: strconv.FormatInt(sh.Version, 10), Percent: sh.Percent, Ready: sh.Ready}
	}
	return view, nil
}

// SetTraffic validates a new traffic block for a model, persists it into the
// model's config.yaml and applies it atomically. Versions it names must be
// versions of the model.
func (s *Server) SetTraffic(name string, t repository.Traffic) error {
	return s.setTraffic("", name, t)
}

// setTraffic is SetTraffic on behalf of owner (see ClaimTraffic).
func (s *Server) setTraffic(owner, name string, t repository.Traffic) error {
	if err := repository.ValidateTraffic(t); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.model(name)
	if err != nil {
		return err
	}
	if err := s.heldBy(name, owner); err != nil {
		return err
	}
	for k := range t.Split {
		n, _ := repository.ParseVersion(k)
		if _, ok := m.known(n); !ok {
			return fmt.Errorf("%w: traffic.split: %s is not a version of model %q", ErrInvalidConfig, k, name)
		}
	}
	if t.Shadow != nil {
		if _, ok := m.known(t.Shadow.Version); !ok {
			return fmt.Errorf("%w: traffic.shadow.version: %d is not a version of model %q", ErrInvalidConfig, t.Shadow.Version, name)
		}
	}
	if err := repository.WriteTraffic(s.cfg.Root, name, t); err != nil {
		return fmt.Errorf("persist traffic of model %q: %w", name, err)
	}
	spec := t.Clone()
	m.mu.Lock()
	m.cfg.Traffic = &spec
	m.mu.Unlock()
	cur := m.serving.Load()
	m.serving.Store(newServingSet(cur.byNumber, &spec))
	s.logRouting(name, owner, spec)
	return nil
}

// shadowJob is one mirrored request: copies of its inputs and the primary's
// outputs to compare against.
type shadowJob struct {
	m       *model
	v       *version
	in      []tensor.Tensor
	primary []tensor.Tensor
	// id, protocol and arrival are the primary request's, for tap records.
	id, protocol string
	arrival      time.Time
}

// shadowQueue runs mirrored requests off the request path. It is bounded:
// when full, copies are dropped and counted, so a slow shadow version never
// slows the primary answers.
type shadowQueue struct {
	jobs    chan shadowJob
	timeout time.Duration
	log     *zap.Logger
	wg      sync.WaitGroup
	// ctx ends when the queue closes: it stops the copy running then.
	ctx    context.Context
	cancel context.CancelFunc
	taps   *tapSet // the server's, to hand shadow answers to

	mu     sync.RWMutex // orders offer's send against close
	closed bool
}

func newShadowQueue(size, workers int, timeout time.Duration, log *zap.Logger, taps *tapSet) *shadowQueue {
	q := &shadowQueue{jobs: make(chan shadowJob, size), timeout: timeout, log: log, taps: taps}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	for range workers {
		q.wg.Add(1)
		go q.work()
	}
	return q
}

// offer queues a copy of req for v, or drops it when the queue is full. The
// inputs are copied because the caller's buffers are reused once it returns.
func (q *shadowQueue) offer(m *model, v *version, req *Request, in, primary []tensor.Tensor) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed || !v.acquire() {
		v.shadow.dropped.Inc()
		return
	}
	job := shadowJob{m: m, v: v, in: make([]tensor.Tensor, len(in)), primary: primary,
		id: req.ID, protocol: req.Protocol, arrival: req.Arrival}
	for i, t := range in {
		t.Shape = slices.Clone(t.Shape)
		t.Data = slices.Clone(t.Data)
		job.in[i] = t
	}
	select {
	case q.jobs <- job:
	default:
		v.release()
		v.shadow.dropped.Inc()
	}
}

func (q *shadowQueue) work() {
	defer q.wg.Done()
	for {
		select {
		case <-q.ctx.Done():
			return
		case job := <-q.jobs:
			q.run(job)
		}
	}
}

func (q *shadowQueue) run(job shadowJob) {
	defer job.v.release()
	ctx, cancel := context.WithTimeout(q.ctx, q.timeout)
	defer cancel()
	var tm batcher.Timing
	out, err := job.v.batch.SubmitTimed(ctx, job.in, &tm)
	if q.taps.active() {
		r := records.Get().(*Record)
		*r = Record{Model: job.m.name, Version: job.v.label, ID: job.id, Protocol: job.protocol, Arm: ArmShadow,
			Err: err, Arrival: job.arrival, Queue: tm.Queue, Compute: tm.Compute, Inputs: job.in, Outputs: out}
		q.taps.handRecord(r)
	}
	switch {
	case err != nil:
		job.v.shadow.failed.Inc()
		job.v.tally.failed.Add(1)
		q.log.Debug("shadow request failed", zap.String("model", job.m.name), zap.String("version", job.v.label), zap.Error(err))
	case agree(job.primary, out):
		job.v.shadow.agreed.Inc()
		job.v.tally.agreed.Add(1)
	default:
		job.v.shadow.disagreed.Inc()
		job.v.tally.disagreed.Add(1)
	}
}

// close stops the workers, cutting short the copy running now, and
// releases the jobs still queued uncounted; later offers are dropped. It is
// safe to call more than once.
func (q *shadowQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cancel()
	q.wg.Wait()
	for {
		select {
		case job := <-q.jobs:
			job.v.release()
		default:
			return
		}
	}
}

// agree reports whether a shadow's outputs match the primary's: the same
// argmax per row for 2-D floating-point outputs, equal bytes otherwise.
func agree(primary, shadow []tensor.Tensor) bool {
	if len(primary) != len(shadow) {
		return false
	}
	for i, p := range primary {
		s := shadow[i]
		if p.DataType != s.DataType || !slices.Equal(p.Shape, s.Shape) {
			return false
		}
		if len(p.Shape) == 2 && (p.DataType == tensor.FP32 || p.DataType == tensor.FP64) {
			if !sameArgmax(p, s) {
				return false
			}
			continue
		}
		if string(p.Data) != string(s.Data) {
			return false
		}
	}
	return true
}

func sameArgmax(a, b tensor.Tensor) bool {
	rows, cols := int(a.Shape[0]), int(a.Shape[1])
	size := a.DataType.Size()
	at := func(d []byte, i int) float64 {
		if size == 4 {
			return float64(math.Float32frombits(binary.LittleEndian.Uint32(d[i*4:])))
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(d[i*8:]))
	}
	for r := range rows {
		ba, bb := 0, 0
		for c := 1; c < cols; c++ {
			if at(a.Data, r*cols+c) > at(a.Data, r*cols+ba) {
				ba = c
			}
			if at(b.Data, r*cols+c) > at(b.Data, r*cols+bb) {
				bb = c
			}
		}
		if ba != bb {
			return false
		}
	}
	return true
}

// PutTraffic parses a traffic block (the YAML schema of config.yaml's
// traffic key; JSON is YAML too) with repository.ParseTrafficUpdate, which
// requires a "split" key, and applies it with SetTraffic.
func (s *Server) PutTraffic(name string, body []byte) error {
	t, err := repository.ParseTrafficUpdate(body)
	if err != nil {
		return err
	}
	return s.SetTraffic(name, t)
}
