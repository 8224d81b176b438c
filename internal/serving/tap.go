package serving

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Arm says which routing arm answered a request.
type Arm uint8

// The arms of a tap record.
const (
	// ArmPrimary is the version whose answer the client got.
	ArmPrimary Arm = iota
	// ArmShadow is a mirrored copy whose answer was discarded.
	ArmShadow
)

func (a Arm) String() string {
	if a == ArmShadow {
		return "shadow"
	}
	return "primary"
}

// Class is the status class of an outcome.
type Class uint8

// The classes of an outcome.
const (
	// ClassOK is a success.
	ClassOK Class = iota
	// ClassClient is the client's fault (a 4xx status).
	ClassClient
	// ClassServer is the server's fault or condition (a 5xx status).
	ClassServer
)

func (c Class) String() string {
	switch c {
	case ClassClient:
		return "client"
	case ClassServer:
		return "server"
	}
	return "ok"
}

// ClassOf returns the class of an HTTP-style status code.
func ClassOf(code int) Class {
	switch {
	case code >= 500:
		return ClassServer
	case code >= 400:
		return ClassClient
	}
	return ClassOK
}

// Record is one answered request as a tap sees it. It and every tensor it
// holds are valid only during Tap.Keep: the record and the request's
// buffers are reused once it returns.
type Record struct {
	// Model and Version are the canonical labels; "" when the request named
	// a model or version the server does not have, or failed before a
	// version was chosen.
	Model, Version string
	ID             string
	Protocol       string
	Arm            Arm
	// Code is the HTTP-style status of the outcome (Config.Status), 200 for
	// a success; Class is its class.
	Code  int
	Class Class
	// Err is the failure, nil on success.
	Err error
	// Arrival is when the request arrived; Queue is its wait in the
	// batcher and Compute its batch's run time (zero when it never ran).
	Arrival        time.Time
	Queue, Compute time.Duration
	// Inputs are the request's inputs, in the model's declared order once
	// they were checked; Outputs are every model output in declared order,
	// nil on failure. Both are read-only.
	Inputs, Outputs []tensor.Tensor
}

// Tap watches answered requests: every request Infer or Refuse answered,
// success or failure, and every shadow copy. T is what the tap keeps of one
// request. A tap never slows a request: Keep copies, and the work happens in
// Consume, on the tap's own goroutine behind a bounded queue.
type Tap[T any] interface {
	// Keep runs on the request path, once per answered request. It must
	// not block, and must not keep r or anything r refers to: it copies what
	// the tap needs into the value it returns. ok false keeps nothing.
	Keep(r *Record) (v T, ok bool)
	// Consume runs on the tap's goroutine for each kept value, in order. It
	// may be slow: values wait in the tap's queue, and once that is full
	// new ones are dropped and counted in onnxserve_tap_dropped_total.
	// Values reach it in bursts, up to about a millisecond after Keep.
	Consume(v T)
}

// DefaultTapQueue is a tap's queue bound when AddTap is given 0.
const DefaultTapQueue = 1024

// AddTap registers t under name, the tap label of its drop counter, with a
// queue of queue values (0: DefaultTapQueue), and starts its goroutine,
// which Close stops after consuming what is queued. cmd/serve registers
// taps before serving starts; adding one later is safe, and it sees the
// requests answered from then on.
func AddTap[T any](s *Server, name string, queue int, t Tap[T]) error {
	if name == "" || t == nil {
		return fmt.Errorf("tap needs a name and an implementation")
	}
	if queue <= 0 {
		queue = DefaultTapQueue
	}
	q := &tapQueue[T]{
		name:    name,
		tap:     t,
		bound:   queue,
		burst:   min(tapBurst, queue/2),
		bell:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		dropped: s.metrics.tapDropped(name),
	}
	return s.taps.add(q)
}

// tapRunner is one registered tap, whatever its T.
type tapRunner interface {
	tapName() string
	offer(r *Record)
	close()
}

// tapSet holds the registered taps. The request path reads the list with
// one atomic load; with no tap it builds no record.
type tapSet struct {
	list   atomic.Pointer[[]tapRunner]
	mu     sync.Mutex // serialises add and close
	closed bool
	status func(error) int
}

func (ts *tapSet) add(q interface {
	tapRunner
	run()
}) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		return fmt.Errorf("tap %q: %w", q.tapName(), ErrShuttingDown)
	}
	var list []tapRunner
	if cur := ts.list.Load(); cur != nil {
		list = append(list, *cur...)
	}
	for _, t := range list {
		if t.tapName() == q.tapName() {
			return fmt.Errorf("tap %q registered twice", q.tapName())
		}
	}
	list = append(list, q)
	go q.run()
	ts.list.Store(&list)
	return nil
}

// active reports whether any tap is registered.
func (ts *tapSet) active() bool { return ts.list.Load() != nil }

// hand gives r to every tap, filling in its status.
func (ts *tapSet) hand(r *Record) {
	list := ts.list.Load()
	if list == nil {
		return
	}
	r.Code = 200
	if r.Err != nil {
		r.Code = 500
		if ts.status != nil {
			r.Code = ts.status(r.Err)
		}
	}
	r.Class = ClassOf(r.Code)
	for _, t := range *list {
		t.offer(r)
	}
}

// close stops every tap after it consumed what is queued, and waits.
func (ts *tapSet) close() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.closed = true
	if list := ts.list.Load(); list != nil {
		for _, t := range *list {
			t.close()
		}
	}
}

// tapQueue runs one tap: Keep on the caller's goroutine, Consume on its own.
//
// It is hand-written rather than a buffered channel because the channel's
// per-value hand-off (a send, a receive and, whenever the tap's goroutine
// had caught up, a wake-up) showed as ~2% of the server's CPU at 30,000
// requests/s. Producers append to a slice under a mutex and ring a 1-slot
// doorbell only when the slice was empty (or reached tapBurst); the tap's
// goroutine lingers up to tapLinger for more, swaps the slice for a spare
// one and consumes the batch outside the lock. A full queue drops on one
// atomic load. The swap alone did not lower the CPU of a ~30,000/s load
// (every offer still found the slice empty and woke the goroutine); the
// linger did. BenchmarkTapHandOff, channel → this, benchstat of -count 8
// interleaved on 2 noisy cores, process CPU per offer: sparse (~40k
// offers/s) 29.8µs → 26.0µs (-13%, 3.8µs less wake-up work per offer),
// paced (~1M/s) 1.22µs → 1.01µs (-18%), saturated 64ns → 38ns (-40%); drops
// unchanged within the noise.
type tapQueue[T any] struct {
	name    string
	tap     Tap[T]
	bound   int           // the most values waiting to be consumed
	burst   int           // this many values in buf end run's linger: min(tapBurst, bound/2)
	bell    chan struct{} // 1-buffered: rung when buf stops being empty or reaches burst, and by close
	done    chan struct{}
	once    sync.Once
	dropped prometheus.Counter

	// waiting counts the values offered and not yet handed to Consume,
	// the ones in buf and the rest of run's batch, as a channel would:
	// offer drops at bound, without taking mu.
	waiting atomic.Int64

	mu     sync.Mutex
	buf    []T  // values offered, not yet taken by run
	closed bool // no more values are queued
}

func (q *tapQueue[T]) tapName() string { return q.name }

// offer keeps what the tap wants of r, or drops it when the queue is full.
// A value offered after close stays unconsumed; it never blocks.
func (q *tapQueue[T]) offer(r *Record) {
	v, ok := q.tap.Keep(r)
	if !ok {
		return
	}
	if q.waiting.Load() >= int64(q.bound) {
		q.dropped.Inc()
		return
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if q.waiting.Load() >= int64(q.bound) {
		q.mu.Unlock()
		q.dropped.Inc()
		return
	}
	q.waiting.Add(1)
	q.buf = append(q.buf, v)
	ring := len(q.buf) == 1 || len(q.buf) == q.burst
	q.mu.Unlock()
	if ring {
		q.ring()
	}
}

// ring wakes run unless a wake-up is already pending.
func (q *tapQueue[T]) ring() {
	select {
	case q.bell <- struct{}{}:
	default:
	}
}

// tapLinger is how long run lets values gather once the first arrives, so
// that a tap's goroutine wakes once for many requests rather than once per
// request; tapBurst values (at most half the queue), or close, end the
// wait early, leaving most of the queue free for the time it takes the
// scheduler to run the tap's goroutine.
const (
	tapLinger = time.Millisecond
	tapBurst  = 64
)

func (q *tapQueue[T]) run() {
	defer close(q.done)
	linger := time.NewTimer(tapLinger)
	linger.Stop()
	var spare []T
	for {
		q.mu.Lock()
		n, closed := len(q.buf), q.closed
		q.mu.Unlock()
		if n == 0 {
			if closed {
				return
			}
			<-q.bell
			continue
		}
		if !closed && n < q.burst {
			linger.Reset(tapLinger)
			select {
			case <-linger.C:
			case <-q.bell:
				linger.Stop()
			}
		}
		q.mu.Lock()
		batch := q.buf
		q.buf = spare
		q.mu.Unlock()
		for _, v := range batch {
			q.waiting.Add(-1)
			q.tap.Consume(v)
		}
		clear(batch) // consumed values must not pin what they refer to
		spare = batch[:0]
	}
}

func (q *tapQueue[T]) close() {
	q.once.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		q.ring()
	})
	<-q.done
}

// records recycles tap records: hand's taps must not keep r (Tap.Keep), so
// a record is free again once hand returns. It saves the request path an
// allocation when a tap is registered; with none, no record is built.
var records = sync.Pool{New: func() any { return new(Record) }}

// handRecord hands r, a record from records, to the taps and recycles it,
// cleared so that it pins no request's tensors.
func (ts *tapSet) handRecord(r *Record) {
	ts.hand(r)
	*r = Record{}
	records.Put(r)
}

// tapAnswered hands a request that reached version v to the taps.
func (s *Server) tapAnswered(req *Request, m *model, v *version, in []tensor.Tensor, resp *Response, err error, tm *batcher.Timing) {
	if !s.taps.active() {
		return
	}
	r := records.Get().(*Record)
	*r = Record{Model: m.name, Version: v.label, ID: req.ID, Protocol: req.Protocol, Arm: ArmPrimary,
		Err: err, Arrival: req.Arrival, Queue: tm.Queue, Compute: tm.Compute, Inputs: in}
	if in == nil {
		r.Inputs = req.Inputs
	}
	if resp != nil {
		r.Outputs = resp.all
	}
	if r.Arrival.IsZero() {
		r.Arrival = time.Now()
	}
	s.taps.handRecord(r)
}

// tapRefused hands a request that failed before any version ran it to the
// taps; model and version are its canonical labels.
func (s *Server) tapRefused(req *Request, model, version string, err error) {
	if !s.taps.active() {
		return
	}
	r := records.Get().(*Record)
	*r = Record{Model: model, Version: version, ID: req.ID, Protocol: req.Protocol, Arm: ArmPrimary,
		Err: err, Arrival: req.Arrival, Inputs: req.Inputs}
	if r.Arrival.IsZero() {
		r.Arrival = time.Now()
	}
	s.taps.handRecord(r)
}
