package batcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Runner runs one batch. Run must be safe for concurrent use when the
// batcher has more than one instance. It must not retain in, or any of its
// data, after returning, and its outputs must not share memory with in: the
// batcher reuses those buffers. The outputs are owned by the caller and are
// handed out to the batch's requests as views, so Run must not modify them
// afterwards. When the model has a batch dimension, every output must have
// one too, with one row per input row. ctx is the batcher's, not a
// request's: it ends only when Close gives up waiting.
//
// An error from Run is taken as possibly caused by one request's data: the
// batcher re-runs a failed batch's requests in smaller groups to find the
// request at fault and answers the others. Run must therefore be safe to
// call again with a subset of a batch that failed.
type Runner interface {
	Run(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error)
}

// Dispatch is the rule by which a free instance starts a batch.
type Dispatch uint8

// The dispatch rules.
const (
	// DispatchWait holds the oldest request up to MaxQueueDelay, or until
	// the batch reaches a preferred size or the cap, hoping for companions:
	// Triton's dynamic batcher. A lone request at low load pays the delay.
	DispatchWait Dispatch = iota
	// DispatchImmediate is work-conserving: a free instance never waits;
	// it takes what is queued now, up to the cap, and runs it. Batches
	// form from the requests that arrive while every instance is busy, so
	// batching costs nothing at low load.
	DispatchImmediate
)

// DefaultMaxQueueSize is the queue bound used when Config.MaxQueueSize is 0.
const DefaultMaxQueueSize = 1024

// Config is one model version's batching policy. The zero value (apart from
// the Runner) is valid: no batch dimension, every request runs alone on one
// instance, queue bound DefaultMaxQueueSize, no default queue deadline.
type Config struct {
	// MaxBatchSize is the most rows one run may hold, and the most rows one
	// request may carry. 0 means the model has no batch dimension: every
	// request runs alone, its inputs are passed through without row checks
	// and its outputs are returned as the Runner made them.
	MaxBatchSize int
	// Batching turns dynamic batching on. Off, each request runs alone but
	// still goes through the same bounded queue, deadlines and instances. It
	// is ignored when MaxBatchSize is 0.
	Batching bool
	// Dispatch says whether a free instance runs what is queued at once
	// (DispatchImmediate) or first waits up to MaxQueueDelay for
	// companions (DispatchWait, the zero value, Triton's behaviour).
	Dispatch Dispatch
	// MaxQueueDelay is the longest the oldest waiting request is held back
	// while the batcher waits for companions. 0 batches only what is already
	// queued when a batch is formed. DispatchImmediate ignores it.
	MaxQueueDelay time.Duration
	// BatchCap, when in [1, MaxBatchSize), is the most rows a batch formed
	// from several requests may hold, such as the size measured fastest
	// per item; a single request of more rows (up to MaxBatchSize) still
	// runs, alone. 0 means MaxBatchSize.
	BatchCap int
	// PreferredBatchSizes are row counts at which a batch is dispatched at
	// once, without waiting for MaxQueueDelay. Each must be in
	// [1, MaxBatchSize]. A batch is dispatched when its row count equals one
	// of them exactly, or equals MaxBatchSize.
	PreferredBatchSizes []int
	// MaxQueueSize bounds the requests admitted but not yet started; beyond
	// it Submit fails at once with ErrOverloaded. 0 means
	// DefaultMaxQueueSize.
	MaxQueueSize int
	// DefaultTimeout is the queue deadline, counted from Submit, of a request
	// whose context has no deadline. 0 means none. It bounds only the wait in
	// the queue: a request that has started runs to completion.
	DefaultTimeout time.Duration
	// Instances is the number of batches executed in parallel; 0 means 1.
	Instances int
	// Model and Version label the metrics and logs; they have no other use.
	Model, Version string
	// InputAxes and OutputAxes give, by position, the axis along which
	// each input and output is stacked and cut (tensor.NoAxis: not batched;
	// every request of a batch must hold the same value, which is passed
	// once and returned to each). Missing entries, and nil, mean axis 0.
	// Recurrent state often has its batch on axis 1; a scalar has none.
	InputAxes, OutputAxes []int
	// WarmedUp says the Runner has already run other input successfully
	// (a warmup), so a failure pinned on the first requests' data is
	// already their fault rather than a sign of a broken model.
	WarmedUp bool
}

// Errors returned by Submit, beside the Runner's own errors, validation
// errors wrapping tensor.ErrInvalid and the context's errors.
var (
	// ErrOverloaded means the queue is full; the caller may retry later.
	ErrOverloaded = errors.New("batcher: queue full")
	// ErrClosed means the batcher was closed before the request could run.
	ErrClosed = errors.New("batcher: closed")
	// ErrTooManyRows means a request carries more rows than
	// Config.MaxBatchSize. It also matches tensor.ErrInvalid: the request is
	// at fault.
	ErrTooManyRows error = &invalidError{msg: "batcher: too many rows"}
	// ErrPanic means the Runner panicked while running the request's batch.
	ErrPanic = errors.New("batcher: runner panicked")
)

// invalidError is a sentinel that is also a tensor.ErrInvalid.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Unwrap() error { return tensor.ErrInvalid }

// A request moves from queued to exactly one of the other states, by
// compare-and-swap, so exactly one party answers it and the queue depth is
// decremented exactly once.
const (
	stQueued    int32 = iota
	stStarted         // a worker took it into a batch that runs
	stAnswered        // the batcher answered it with an error before it started
	stAbandoned       // Submit gave up on it while queued; nobody answers it
)

type result struct {
	out []tensor.Tensor
	err error
}

type request struct {
	ctx  context.Context
	in   []tensor.Tensor // in the order every request of this batcher uses
	rows int64
	// waited and took are the request's time in the queue and its batch's
	// run time, written by the worker before it answers.
	waited, took time.Duration
	enqueued     time.Time
	deadline     time.Time // zero when none
	// fromDefault says the deadline came from Config.DefaultTimeout, for the
	// error message.
	fromDefault bool
	state       atomic.Int32
	// done is 1-buffered so the worker never blocks on a caller that left.
	done chan result
}

// expired returns the error a request that must no longer start is answered
// with, or nil.
func (r *request) expired(now time.Time, timeout time.Duration) error {
	if !r.deadline.IsZero() && !now.Before(r.deadline) {
		return r.deadlineErr(timeout)
	}
	return r.ctx.Err()
}

func (r *request) deadlineErr(timeout time.Duration) error {
	if r.fromDefault {
		return fmt.Errorf("waited in the queue longer than the default timeout %v: %w", timeout, context.DeadlineExceeded)
	}
	return context.DeadlineExceeded
}

// Batcher queues requests for one model version and runs them in batches.
// It is safe for concurrent use.
type Batcher struct {
	runner         Runner
	cfg            Config
	batching       bool
	log            *zap.Logger
	metrics        *Metrics
	obs            observers
	stats          statCounters
	health         runHealth
	rejectLog      rateLog
	preferredSizes []int64
	batchCap       int64 // rows a batch of several requests may hold

	// mu orders Submit's send against Close's close of in.
	mu     sync.RWMutex
	closed bool
	in     chan *request

	// token is held by the one worker that is forming a batch. It is a
	// channel rather than a mutex so that a worker waiting for it counts as
	// blocked under testing/synctest.
	token chan struct{}
	// carry holds requests read from in that did not fit the batch being
	// formed, oldest first. Guarded by token.
	carry []*request
	// drained is set once in is closed and empty. Guarded by token.
	drained bool

	// abort is closed when Close's context ends: queued requests are then
	// failed with ErrClosed and runCtx is cancelled.
	abort     chan struct{}
	abortOnce sync.Once
	runCtx    context.Context
	cancelRun context.CancelFunc

	live   atomic.Int32  // workers not yet exited
	exited chan struct{} // closed by the last worker to exit

	queued   atomic.Int64 // admitted, not started, not given up
	inflight atomic.Int64 // admitted, not yet answered

	closeOnce  sync.Once
	detachOnce sync.Once

	requests sync.Pool // *request, reused only once Submit got its answer
	timers   sync.Pool // *time.Timer for DefaultTimeout
	buffers  sync.Pool // *[]byte for stacked inputs
}

// New starts a batcher that runs batches through r. log (nil: no logs)
// should already name the model version: the batcher adds no fields of its
// own. m may be nil for no metrics. The caller must call Close to stop the
// batcher's goroutines.
func New(r Runner, cfg Config, log *zap.Logger, m *Metrics) (*Batcher, error) {
	if r == nil {
		return nil, errors.New("batcher: nil runner")
	}
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("batcher for %s version %s: %w", cfg.Model, cfg.Version, err)
	}
	if cfg.MaxQueueSize == 0 {
		cfg.MaxQueueSize = DefaultMaxQueueSize
	}
	if cfg.Instances == 0 {
		cfg.Instances = 1
	}
	if log == nil {
		log = zap.NewNop()
	}
	b := &Batcher{
		runner:   r,
		cfg:      cfg,
		batching: cfg.Batching && cfg.MaxBatchSize > 0,
		log:      log,
		metrics:  m,
		in:       make(chan *request, cfg.MaxQueueSize),
		token:    make(chan struct{}, 1),
		abort:    make(chan struct{}),
		exited:   make(chan struct{}),
	}
	b.batchCap = int64(cfg.MaxBatchSize)
	if cfg.BatchCap > 0 && cfg.BatchCap < cfg.MaxBatchSize {
		b.batchCap = int64(cfg.BatchCap)
	}
	for _, p := range cfg.PreferredBatchSizes {
		b.preferredSizes = append(b.preferredSizes, int64(p))
	}
	b.runCtx, b.cancelRun = context.WithCancel(context.Background())
	b.health.proven.Store(cfg.WarmedUp)
	b.obs = m.attach(b)
	b.live.Store(int32(cfg.Instances))
	for range cfg.Instances {
		go b.work()
	}
	return b, nil
}

func (c *Config) check() error {
	switch {
	case c.MaxBatchSize < 0:
		return fmt.Errorf("max batch size %d is negative", c.MaxBatchSize)
	case c.MaxQueueDelay < 0:
		return fmt.Errorf("max queue delay %v is negative", c.MaxQueueDelay)
	case c.MaxQueueSize < 0:
		return fmt.Errorf("max queue size %d is negative", c.MaxQueueSize)
	case c.DefaultTimeout < 0:
		return fmt.Errorf("default timeout %v is negative", c.DefaultTimeout)
	case c.Instances < 0:
		return fmt.Errorf("instance count %d is negative", c.Instances)
	case c.BatchCap < 0:
		return fmt.Errorf("batch cap %d is negative", c.BatchCap)
	case c.Dispatch > DispatchImmediate:
		return fmt.Errorf("unknown dispatch rule %d", c.Dispatch)
	}
	if c.Batching && c.MaxBatchSize > 0 {
		for _, p := range c.PreferredBatchSizes {
			if p < 1 || p > c.MaxBatchSize {
				return fmt.Errorf("preferred batch size %d is outside [1, max batch size %d]", p, c.MaxBatchSize)
			}
		}
	}
	return nil
}

// Submit queues in for the next suitable batch and waits for its outputs.
// It returns ErrOverloaded at once when the queue is full and ErrClosed once
// Close has begun. When ctx ends, or the default queue deadline passes,
// Submit returns the context error promptly: a request still queued is then
// never run; one already running runs on and its result is discarded.
//
// Preconditions, which the caller owns and Submit does not check again:
// every tensor of in is valid (tensor.Validate), and every request of this
// batcher lists the same inputs in the same order (the model's declared
// order), so that batches stack them by position. The inputs of a request
// with a batch dimension must all have the same first dimension, at most
// Config.MaxBatchSize; Submit checks that. Submit does not modify in,
// but the batch may read in's data until it has run, which can be after
// Submit returned because ctx ended; a caller that recycles the buffers must
// copy them first.
//
// The outputs are views that may share memory with other requests' outputs;
// treat their data as read-only.
func (b *Batcher) Submit(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	return b.SubmitTimed(ctx, in, nil)
}

// Timing is where one request's time went inside the batcher.
type Timing struct {
	// Queue is the time from Submit to its batch starting; zero when the
	// request never started.
	Queue time.Duration
	// Compute is the run time of the batch the request was part of.
	Compute time.Duration
}

// SubmitTimed is Submit that also fills t, when not nil, with the
// request's queue wait and its batch's run time once it was answered.
func (b *Batcher) SubmitTimed(ctx context.Context, in []tensor.Tensor, t *Timing) ([]tensor.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in, rows, err := b.checkInputs(in)
	if err != nil {
		return nil, err
	}
	r, _ := b.requests.Get().(*request)
	if r == nil {
		r = &request{done: make(chan result, 1)}
	}
	r.ctx, r.in, r.rows = ctx, in, rows
	r.waited, r.took = 0, 0
	r.enqueued = time.Now()
	r.deadline, r.fromDefault = time.Time{}, false
	var timer *time.Timer
	var timeout <-chan time.Time
	if dl, ok := ctx.Deadline(); ok {
		r.deadline = dl
	} else if b.cfg.DefaultTimeout > 0 {
		r.deadline, r.fromDefault = r.enqueued.Add(b.cfg.DefaultTimeout), true
		timer = b.getTimer()
		timeout = timer.C
		defer b.putTimer(timer)
	}
	r.state.Store(stQueued)
	if err := b.enqueue(r); err != nil {
		b.putRequest(r)
		return nil, err
	}
	for {
		select {
		case res := <-r.done:
			if t != nil {
				*t = Timing{Queue: r.waited, Compute: r.took}
			}
			b.putRequest(r)
			return res.out, res.err
		case <-ctx.Done():
			b.giveUp(r)
			return nil, ctx.Err()
		case <-timeout:
			if b.giveUp(r) {
				return nil, r.deadlineErr(b.cfg.DefaultTimeout)
			}
			// Already started: the default timeout bounds only the queue.
			timeout = nil
		}
	}
}

// giveUp withdraws a queued request, reporting whether it was still queued.
// A request that has started or been answered is left to its worker, which
// answers on the buffered channel nobody reads; it is not reused.
func (b *Batcher) giveUp(r *request) bool {
	if b.leaveQueue(r, stAbandoned) {
		b.inflight.Add(-1)
		return true
	}
	return false
}

func (b *Batcher) enqueue(r *request) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	for {
		q := b.queued.Load()
		if q >= int64(b.cfg.MaxQueueSize) {
			return ErrOverloaded
		}
		if b.queued.CompareAndSwap(q, q+1) {
			break
		}
	}
	b.inflight.Add(1)
	select {
	case b.in <- r:
		return nil
	default:
		// Requests given up while queued still hold their slot in the
		// channel until a worker reads them past.
		b.queued.Add(-1)
		b.inflight.Add(-1)
		return ErrOverloaded
	}
}

// leaveQueue moves a queued request to state to, reporting whether this
// caller won it.
func (b *Batcher) leaveQueue(r *request, to int32) bool {
	if r.state.CompareAndSwap(stQueued, to) {
		b.queued.Add(-1)
		return true
	}
	return false
}

// answer delivers a request's one result. The caller must have won the
// request with leaveQueue and must not touch it afterwards: Submit may
// reuse it.
func (b *Batcher) answer(r *request, res result) {
	b.inflight.Add(-1)
	r.done <- res
}

func (b *Batcher) putRequest(r *request) {
	r.ctx, r.in = nil, nil
	b.requests.Put(r)
}

func (b *Batcher) getTimer() *time.Timer {
	if t, ok := b.timers.Get().(*time.Timer); ok {
		t.Reset(b.cfg.DefaultTimeout)
		return t
	}
	return time.NewTimer(b.cfg.DefaultTimeout)
}

func (b *Batcher) putTimer(t *time.Timer) {
	t.Stop()
	b.timers.Put(t)
}

// checkInputs returns a request's row count, checking what only the
// batcher knows: that its inputs agree on a batch size within
// Config.MaxBatchSize. It does not look at the inputs otherwise (see
// Submit's preconditions).
func (b *Batcher) checkInputs(in []tensor.Tensor) ([]tensor.Tensor, int64, error) {
	if b.cfg.MaxBatchSize == 0 {
		// One request, one run: count it as one row for the batch size
		// histogram.
		return in, 1, nil
	}
	if len(in) == 0 {
		return nil, 0, tensor.Invalidf("request has no inputs")
	}
	rows, first := int64(-1), -1
	for j, t := range in {
		axis := axisOf(b.cfg.InputAxes, j)
		if axis == tensor.NoAxis {
			continue
		}
		n, err := tensor.RowsAt(t, axis)
		if err != nil {
			return nil, 0, err
		}
		if first < 0 {
			rows, first = n, j
			continue
		}
		if n != rows {
			return nil, 0, tensor.Invalidf("input %q has batch size %d but input %q has %d: all inputs of a request need the same batch size",
				t.Name, n, in[first].Name, rows)
		}
	}
	if first < 0 {
		return in, 1, nil // nothing batched: the request is one row
	}
	if rows < 1 {
		return nil, 0, tensor.Invalidf("input %q has batch size 0: a request needs at least one row", in[first].Name)
	}
	if rows > int64(b.cfg.MaxBatchSize) {
		return nil, 0, fmt.Errorf("input %q has batch size %d, more than the model's max batch size %d: %w",
			in[first].Name, rows, b.cfg.MaxBatchSize, ErrTooManyRows)
	}
	return in, rows, nil
}

// axisOf returns the batch axis of position j: axes[j], or 0 when axes does
// not say.
func axisOf(axes []int, j int) int {
	if j < len(axes) {
		return axes[j]
	}
	return 0
}

// QueueDepth returns the number of requests admitted and not yet started.
func (b *Batcher) QueueDepth() int { return int(b.queued.Load()) }

// Inflight returns the number of requests admitted and not yet answered.
func (b *Batcher) Inflight() int { return int(b.inflight.Load()) }

// Close stops intake (Submit then returns ErrClosed), lets the queued and
// running requests finish and waits for the batcher's goroutines. If ctx
// ends first, the requests still queued are answered with ErrClosed, the
// context passed to running batches is cancelled, and Close returns
// ctx.Err() once those batches have finished. Close removes the version's
// metric series unless another open batcher shares its labels. It is safe
// to call more than once and concurrently.
func (b *Batcher) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.in)
		b.mu.Unlock()
	})
	var err error
	select {
	case <-b.exited:
	case <-ctx.Done():
		err = ctx.Err()
		b.abortOnce.Do(func() {
			close(b.abort)
			b.cancelRun()
		})
		// Answer the queue now rather than when a busy worker comes back
		// for it. A worker forming a batch sees abort and gives the token
		// back promptly.
		b.token <- struct{}{}
		b.failQueued()
		<-b.token
		<-b.exited
	}
	b.cancelRun()
	b.detachOnce.Do(func() { b.metrics.detach(b) })
	return err
}

func (b *Batcher) aborted() bool {
	select {
	case <-b.abort:
		return true
	default:
		return false
	}
}

// Stats are a batcher's cumulative counts since it was created, the
// figures of the v2 statistics extension.
type Stats struct {
	// Executions is the number of Runner calls (batches run).
	Executions int64
	// Inferences is the number of rows run, across all batches.
	Inferences int64
	// Queue is the total time started requests waited in the queue.
	Queue time.Duration
	// Compute is the total time spent in Runner.Run.
	Compute time.Duration
}

type statCounters struct {
	executions, inferences, queueNs, computeNs atomic.Int64
}

// Stats returns the cumulative counts; safe for concurrent use.
func (b *Batcher) Stats() Stats {
	return Stats{
		Executions: b.stats.executions.Load(),
		Inferences: b.stats.inferences.Load(),
		Queue:      time.Duration(b.stats.queueNs.Load()),
		Compute:    time.Duration(b.stats.computeNs.Load()),
	}
}
