package batcher

import (
	"fmt"
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// worker is one execution instance: it takes the token, forms a batch,
// gives the token back and runs the batch. Its scratch slices are reused
// from batch to batch.
type worker struct {
	timer   *time.Timer
	batch   []*request // collected, not yet started
	members []*request // started
	rows    []int64
	ins     []tensor.Tensor
	parts   []tensor.Tensor
	split   []tensor.Tensor
	bufs    []*[]byte
	nrows   int64 // rows in batch

	// pinned collects the failures an isolation pinned on single
	// requests, answered once the whole batch is settled; anyOK says
	// whether some run of the batch succeeded.
	pinned []pinnedFailure
	anyOK  bool
}

func (b *Batcher) work() {
	defer func() {
		if b.live.Add(-1) == 0 {
			close(b.exited)
		}
	}()
	w := &worker{timer: time.NewTimer(time.Hour)}
	w.timer.Stop()
	for b.collect(w) {
		b.run(w)
	}
}

// full reports whether a batch of rows rows cannot grow.
func (b *Batcher) full(rows int64) bool {
	return rows >= b.batchCap
}

// preferred reports whether rows is one of the preferred batch sizes: a
// batch that reaches one stops waiting for companions, though it still
// takes requests that are already queued, up to the batch cap.
func (b *Batcher) preferred(rows int64) bool {
	for _, p := range b.preferredSizes {
		if rows == p {
			return true
		}
	}
	return false
}

// sameLayout reports whether two requests' inputs can be stacked: same
// names (both are sorted), data types and non-batch dimensions, and equal
// values for inputs without a batch axis.
func (bt *Batcher) sameLayout(a, b *request) bool {
	if len(a.in) != len(b.in) {
		return false
	}
	for i := range a.in {
		if !tensor.SameLayoutAt(a.in[i], b.in[i], axisOf(bt.cfg.InputAxes, i)) {
			return false
		}
	}
	return true
}

// alive reports whether a queued request may still join a batch; one whose
// deadline has passed is answered here.
func (b *Batcher) alive(r *request) bool {
	if r.state.Load() != stQueued {
		return false
	}
	if r.deadline.IsZero() {
		return true
	}
	if err := r.expired(time.Now(), b.cfg.DefaultTimeout); err != nil {
		if b.leaveQueue(r, stAnswered) {
			b.answer(r, result{err: err})
		}
		return false
	}
	return true
}

func (w *worker) add(r *request) {
	w.batch = append(w.batch, r)
	w.nrows += r.rows
}

// collect forms the next batch into w.batch. It blocks for the first
// request, then gathers companions of the same layout until the batch is
// full (BatchCap), a request does not fit, or MaxQueueDelay has passed
// since the first request was queued; under DispatchImmediate it takes
// only what is queued already and never waits. Once the batch reaches a
// preferred size it stops waiting but still takes what is already queued:
// under load batches grow to the cap, and a preferred size never caps
// them. It reports false when the worker should exit.
func (b *Batcher) collect(w *worker) bool {
	b.token <- struct{}{}
	defer func() { <-b.token }()
	w.batch, w.nrows = w.batch[:0], 0
	if b.aborted() {
		b.failQueued()
		return false
	}

	// Requests carried over from earlier rounds are older than anything
	// in the channel: the oldest seeds the batch, and those of its layout
	// that fit join it in order.
	var seed *request
	done, noWait := false, false
	kept := b.carry[:0]
	for i, r := range b.carry {
		b.carry[i] = nil
		if !b.alive(r) {
			continue
		}
		switch {
		case seed == nil:
			seed = r
			w.add(r)
			done = !b.batching || b.full(w.nrows)
			noWait = b.preferred(w.nrows)
			continue
		case !done && b.sameLayout(seed, r):
			if w.nrows+r.rows <= b.batchCap {
				w.add(r)
				done = b.full(w.nrows)
				noWait = noWait || b.preferred(w.nrows)
				continue
			}
			done = true // it starts the next batch
		}
		kept = append(kept, r)
	}
	b.carry = kept

	for seed == nil {
		if b.drained {
			return false
		}
		select {
		case r, ok := <-b.in:
			if !ok {
				b.drained = true
				return false
			}
			if b.alive(r) {
				seed = r
				w.add(r)
				done = !b.batching || b.full(w.nrows)
				noWait = b.preferred(w.nrows)
			}
		case <-b.abort:
			b.failQueued()
			return false
		}
	}
	if done || b.drained {
		return true
	}

	// One timer, armed for the seed's remaining delay; once it has passed,
	// take only what is already queued.
	noWait = noWait || b.cfg.Dispatch == DispatchImmediate
	var timeout <-chan time.Time
	if wait := time.Until(seed.enqueued.Add(b.cfg.MaxQueueDelay)); wait > 0 && !noWait {
		w.timer.Reset(wait)
		defer w.timer.Stop()
		timeout = w.timer.C
	}
	// yield: under DispatchImmediate, an empty queue is given one turn of
	// the scheduler before the batch runs, and another after each turn
	// that brought requests. Goroutines that are about to queue (callers
	// decoding requests on the same CPU) run first and join the batch; on
	// an idle server nothing else is runnable and the turn returns at
	// once, so a lone request does not wait. Without it, with one CPU, the
	// worker woken by the first request runs it before any other caller
	// is scheduled, and batches stay at one request under any load.
	yield := b.cfg.Dispatch == DispatchImmediate
	for {
		var r *request
		var ok bool
		if timeout == nil {
			select {
			case r, ok = <-b.in:
			default:
				if !yield {
					return true
				}
				yield = false
				runtime.Gosched()
				continue
			}
		} else {
			select {
			case r, ok = <-b.in:
			case <-timeout:
				return true
			case <-b.abort:
				return true // run answers the batch with ErrClosed
			}
		}
		if !ok {
			b.drained = true
			return true
		}
		if !b.alive(r) {
			continue
		}
		if !b.sameLayout(seed, r) {
			b.carry = append(b.carry, r)
			if len(b.carry) >= b.cfg.MaxQueueSize {
				return true
			}
			continue
		}
		if w.nrows+r.rows > b.batchCap {
			b.carry = append(b.carry, r)
			return true
		}
		w.add(r)
		if b.full(w.nrows) {
			return true
		}
		if b.preferred(w.nrows) {
			timeout = nil // stop waiting; take only what is queued
		}
		yield = b.cfg.Dispatch == DispatchImmediate
	}
}

// failQueued answers every request still queued with ErrClosed. It runs
// with the token held, after in has been closed.
func (b *Batcher) failQueued() {
	for i, r := range b.carry {
		b.carry[i] = nil
		if b.leaveQueue(r, stAnswered) {
			b.answer(r, result{err: ErrClosed})
		}
	}
	b.carry = b.carry[:0]
	for r := range b.in {
		if b.leaveQueue(r, stAnswered) {
			b.answer(r, result{err: ErrClosed})
		}
	}
	b.drained = true
}

// run starts the collected batch's live requests, runs them as one batch
// and answers each.
func (b *Batcher) run(w *worker) {
	aborted := b.aborted()
	now := time.Now()
	var rows int64
	for i, r := range w.batch {
		w.batch[i] = nil
		if aborted {
			if b.leaveQueue(r, stAnswered) {
				b.answer(r, result{err: ErrClosed})
			}
			continue
		}
		if err := r.expired(now, b.cfg.DefaultTimeout); err != nil {
			if b.leaveQueue(r, stAnswered) {
				b.answer(r, result{err: err})
			}
			continue
		}
		if !b.leaveQueue(r, stStarted) {
			continue // given up by its caller
		}
		waited := now.Sub(r.enqueued)
		r.waited = waited
		b.obs.queue.Observe(waited.Seconds())
		b.stats.queueNs.Add(int64(waited))
		w.members = append(w.members, r)
		rows += r.rows
	}
	w.batch = w.batch[:0]
	if len(w.members) == 0 {
		return
	}
	defer func() {
		clear(w.members)
		w.members = w.members[:0]
	}()
	w.anyOK = false

	if err := b.exec(w, w.members, rows); err != nil {
		b.runFailed(w, err)
	}
}

// exec runs members (rows rows in all) as one batch and, when the run
// succeeds, answers each with its own rows. It returns the Runner's error
// without answering anyone, so the caller can isolate the failure. A
// failure that is not the Runner's (stacking, a broken Runner contract) is
// answered here, and exec returns nil.
func (b *Batcher) exec(w *worker, members []*request, rows int64) error {
	var in []tensor.Tensor
	if len(members) == 1 {
		in = members[0].in // nothing to stack: no copy
	} else {
		var err error
		if in, err = b.stack(w, members); err != nil {
			b.releaseBuffers(w)
			b.log.Error("stacking a batch failed", zap.Error(err))
			b.failAll(members, fmt.Errorf("batcher: stack inputs: %v", err))
			return nil
		}
	}
	start := time.Now()
	out, err := b.call(in)
	took := time.Since(start)
	for _, r := range members {
		r.took = took
	}
	b.obs.compute.Observe(took.Seconds())
	b.obs.batch.Observe(float64(rows))
	b.stats.executions.Add(1)
	b.stats.inferences.Add(rows)
	b.stats.computeNs.Add(int64(took))
	b.releaseBuffers(w)

	if err != nil {
		b.log.Debug("batch failed", zap.Int("requests", len(members)), zap.Int64("rows", rows), zap.Error(err))
		return err
	}
	b.health.succeeded()
	w.anyOK = true
	if b.cfg.MaxBatchSize > 0 {
		if err := checkOutputs(out, rows, b.cfg.OutputAxes); err != nil {
			b.log.Error("runner broke its contract", zap.Error(err))
			b.failAll(members, err)
			return nil
		}
	}
	if len(members) == 1 {
		b.answer(members[0], result{out: out})
		return nil
	}
	if err := b.splitOutputs(w, members, out); err != nil {
		b.log.Error("splitting a batch failed", zap.Error(err))
		b.failAll(members, err)
	}
	return nil
}

// call runs the batch, turning a panic into an error for its members.
func (b *Batcher) call(in []tensor.Tensor) (out []tensor.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			b.log.Error("runner panicked", zap.Any("panic", p), zap.Stack("stack"))
			out, err = nil, fmt.Errorf("%w: %v", ErrPanic, p)
		}
	}()
	return b.runner.Run(b.runCtx, in)
}

func (b *Batcher) failAll(members []*request, err error) {
	for _, r := range members {
		b.answer(r, result{err: err})
	}
}

// checkOutputs enforces the Runner contract for a model with a batch
// dimension. Its errors do not wrap tensor.ErrInvalid: a broken runner is
// not the client's fault.
func checkOutputs(out []tensor.Tensor, rows int64, axes []int) error {
	if len(out) == 0 {
		return fmt.Errorf("batcher: runner returned no outputs for a batch of %d rows", rows)
	}
	for j, t := range out {
		axis := axisOf(axes, j)
		if axis == tensor.NoAxis {
			continue
		}
		if axis >= len(t.Shape) || t.Shape[axis] != rows {
			return fmt.Errorf("batcher: runner returned output %q with shape %v for a batch of %d rows along axis %d", t.Name, t.Shape, rows, axis)
		}
	}
	return nil
}

// stack concatenates the members' inputs, one pooled buffer per input.
func (b *Batcher) stack(w *worker, members []*request) ([]tensor.Tensor, error) {
	first := members[0].in
	w.ins = w.ins[:0]
	for j := range first {
		w.parts = w.parts[:0]
		for _, r := range members {
			w.parts = append(w.parts, r.in[j])
		}
		axis := axisOf(b.cfg.InputAxes, j)
		if axis == tensor.NoAxis {
			w.ins = append(w.ins, first[j]) // equal in every member
			continue
		}
		buf := b.getBuffer(tensor.ConcatSize(w.parts))
		w.bufs = append(w.bufs, buf)
		t, err := tensor.ConcatAt(w.parts, axis, *buf)
		if err != nil {
			return nil, err
		}
		w.ins = append(w.ins, t)
	}
	clear(w.parts)
	return w.ins, nil
}

func (b *Batcher) getBuffer(n int) *[]byte {
	buf, _ := b.buffers.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	if cap(*buf) < n {
		*buf = make([]byte, 0, n)
	}
	*buf = (*buf)[:0]
	return buf
}

// releaseBuffers returns the stacked inputs' buffers once Run has returned:
// the Runner may not retain them.
func (b *Batcher) releaseBuffers(w *worker) {
	for i, buf := range w.bufs {
		b.buffers.Put(buf)
		w.bufs[i] = nil
	}
	w.bufs = w.bufs[:0]
	clear(w.ins)
	w.ins = w.ins[:0]
}

// splitOutputs answers each member with views of its own rows.
func (b *Batcher) splitOutputs(w *worker, members []*request, out []tensor.Tensor) error {
	k, n := len(members), len(out)
	w.rows = w.rows[:0]
	for _, r := range members {
		w.rows = append(w.rows, r.rows)
	}
	if cap(w.split) < k {
		w.split = make([]tensor.Tensor, k)
	}
	split := w.split[:k]
	defer clear(split)
	all := make([]tensor.Tensor, k*n)
	for j, t := range out {
		if err := tensor.SplitAt(split, t, axisOf(b.cfg.OutputAxes, j), w.rows); err != nil {
			return fmt.Errorf("batcher: split output %q of the runner: %v", t.Name, err)
		}
		for i := range split {
			all[i*n+j] = split[i]
		}
	}
	for i, r := range members {
		b.answer(r, result{out: all[i*n : (i+1)*n : (i+1)*n]})
	}
	return nil
}
