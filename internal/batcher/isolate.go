package batcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ErrRejected means the model failed on this request's data alone while
// it answers other input: the request is at fault, so it also matches
// tensor.ErrInvalid. Its message, followed by the Runner's reason, is what
// the client reads.
var ErrRejected error = &invalidError{msg: "the model rejected this input"}

// brokenStreak is how many failed requests in a row, with no successful run
// between them, turn a version from "rejects some inputs" into "broken":
// from then on a request's failure is the server's (500 / INTERNAL) until a
// run succeeds again.
const brokenStreak = 32

// Rejection log lines are limited per batcher to rejectLogBurst in each
// rejectLogWindow; the next line logged says how many were left out.
const (
	rejectLogBurst  = 5
	rejectLogWindow = time.Second
)

// pinnedFailure is a run failure pinned on one request.
type pinnedFailure struct {
	r   *request
	err error
}

// runHealth tracks a version's recent run outcomes, read to tell a request
// the model rejects from a model that fails everything. Safe for
// concurrent use.
type runHealth struct {
	// proven is set once a run succeeded (or the version was warmed up).
	proven atomic.Bool
	// streak counts failed requests since the last successful run.
	streak atomic.Int64
}

// succeeded records a successful run. It only writes when something
// changes, so the success path stays a pair of loads.
func (h *runHealth) succeeded() {
	if !h.proven.Load() {
		h.proven.Store(true)
	}
	if h.streak.Load() != 0 {
		h.streak.Store(0)
	}
}

// runFailed settles a batch whose run failed with err. A batch of several
// requests is re-run in halves, recursively, until every failure is pinned
// on a single request (bisect); the requests of every half that succeeds
// are answered with their own rows. For n requests that is at most 2n-1
// runs in all, the first included. A request whose deadline passes, or
// whose caller gives up, before its re-run is answered with that error and
// not run again. Once the batch is settled, each pinned failure is
// classified (see inputFault) and answered.
func (b *Batcher) runFailed(w *worker, err error) {
	if len(w.members) > 1 && !isStop(err) {
		b.obs.isolations.Inc()
		b.bisect(w, w.members, err)
	} else {
		for _, r := range w.members {
			w.pinned = append(w.pinned, pinnedFailure{r, err})
		}
	}
	for i, p := range w.pinned {
		b.answer(p.r, result{err: b.classify(p, w.anyOK)})
		w.pinned[i] = pinnedFailure{}
	}
	w.pinned = w.pinned[:0]
}

// bisect isolates the failure err of a run of members: it re-runs each
// half, and halves a failing half again, down to single requests.
func (b *Batcher) bisect(w *worker, members []*request, err error) {
	if len(members) == 1 || isStop(err) {
		for _, r := range members {
			w.pinned = append(w.pinned, pinnedFailure{r, err})
		}
		return
	}
	mid := len(members) / 2
	b.rerun(w, members[:mid])
	b.rerun(w, members[mid:])
}

// rerun runs members again as one batch, leaving out those that may no
// longer start, and bisects it further when it fails.
func (b *Batcher) rerun(w *worker, members []*request) {
	now := time.Now()
	live := members[:0]
	var rows int64
	for _, r := range members {
		if err := r.expired(now, b.cfg.DefaultTimeout); err != nil {
			b.answer(r, result{err: err})
			continue
		}
		live = append(live, r)
		rows += r.rows
	}
	clear(members[len(live):])
	if len(live) == 0 {
		return
	}
	if err := b.exec(w, live, rows); err != nil {
		b.bisect(w, live, err)
	}
}

// isStop reports whether a run failed because the batcher's context ended
// (Close gave up waiting): no re-run can succeed then.
func isStop(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// inputFault reports whether a run failure pinned on one request is that
// request's fault. It is when the failure is the model's (not a stop, not a
// panic) and the version answers other input: another run of the same
// batch succeeded, or some run succeeded before (a warmup counts) and fewer
// than brokenStreak requests have failed in a row since. A version whose
// every recent request fails is broken, whatever the requests hold.
func (b *Batcher) inputFault(err error, batchOK bool) bool {
	if isStop(err) || errors.Is(err, ErrPanic) {
		return false
	}
	n := b.health.streak.Add(1)
	if batchOK {
		return true
	}
	return b.health.proven.Load() && n <= brokenStreak
}

// classify returns the error a pinned failure is answered with: a
// rejection (ErrRejected, the client's fault) or the run's failure.
func (b *Batcher) classify(p pinnedFailure, batchOK bool) error {
	if !b.inputFault(p.err, batchOK) {
		return fmt.Errorf("run batch of %d rows: %w", p.r.rows, p.err)
	}
	b.obs.rejections.Inc()
	b.rejectLog.log(b.log, p.err)
	return fmt.Errorf("%w: %w", ErrRejected, p.err)
}

// rateLog writes a warning at most rejectLogBurst times per
// rejectLogWindow, and counts the lines it leaves out. Safe for concurrent
// use.
type rateLog struct {
	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed int
}

func (l *rateLog) log(log *zap.Logger, err error) {
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.window) >= rejectLogWindow {
		l.window, l.n = now, 0
	}
	if l.n >= rejectLogBurst {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.n++
	suppressed := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	log.Warn("the model rejected a request's input", zap.String("reason", err.Error()), zap.Int("suppressed", suppressed))
}
