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
// holds are valid only during Tap.Keep: the request's buffers are reused
// once it returns.
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
		ch:      make(chan T, queue),
		stop:    make(chan struct{}),
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
type tapQueue[T any] struct {
	name    string
	tap     Tap[T]
	ch      chan T
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	dropped prometheus.Counter
}

func (q *tapQueue[T]) tapName() string { return q.name }

// offer keeps what the tap wants of r, or drops it when the queue is full.
// A value offered after close stays unconsumed; it never blocks.
func (q *tapQueue[T]) offer(r *Record) {
	v, ok := q.tap.Keep(r)
	if !ok {
		return
	}
	select {
	case q.ch <- v:
	default:
		q.dropped.Inc()
	}
}

func (q *tapQueue[T]) run() {
	defer close(q.done)
	for {
		select {
		case v := <-q.ch:
			q.tap.Consume(v)
		case <-q.stop:
			for {
				select {
				case v := <-q.ch:
					q.tap.Consume(v)
				default:
					return
				}
			}
		}
	}
}

func (q *tapQueue[T]) close() {
	q.once.Do(func() { close(q.stop) })
	<-q.done
}

// tapAnswered hands a request that reached version v to the taps.
func (s *Server) tapAnswered(req *Request, m *model, v *version, in []tensor.Tensor, resp *Response, err error, tm *batcher.Timing) {
	if !s.taps.active() {
		return
	}
	r := &Record{Model: m.name, Version: v.label, ID: req.ID, Protocol: req.Protocol, Arm: ArmPrimary,
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
	s.taps.hand(r)
}

// tapRefused hands a request that failed before any version ran it to the
// taps; model and version are its canonical labels.
func (s *Server) tapRefused(req *Request, model, version string, err error) {
	if !s.taps.active() {
		return
	}
	r := &Record{Model: model, Version: version, ID: req.ID, Protocol: req.Protocol, Arm: ArmPrimary,
		Err: err, Arrival: req.Arrival, Inputs: req.Inputs}
	if r.Arrival.IsZero() {
		r.Arrival = time.Now()
	}
	s.taps.hand(r)
}
