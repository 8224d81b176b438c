package quality

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxCatchUp bounds how long feedback waits for predictions still in the
// tap's queue. A prediction the queue dropped never arrives; the wait then
// ends here and the item is unknown_id.
const maxCatchUp = 250 * time.Millisecond

// progress lets feedback wait for the predictions kept before it arrived:
// Keep counts what it hands to the queue, Consume what it has queued for
// the store, and a client that posts ground truth right after its answer
// still finds the prediction. Safe for concurrent use.
type progress struct {
	kept atomic.Uint64

	mu   sync.Mutex
	done uint64
	ch   chan struct{} // closed on the next advance; nil without waiters
}

// advance records one consumed prediction.
func (p *progress) advance() {
	p.mu.Lock()
	p.done++
	if p.ch != nil {
		close(p.ch)
		p.ch = nil
	}
	p.mu.Unlock()
}

// catchUp waits until every prediction kept before the call is consumed,
// at most maxCatchUp.
func (p *progress) catchUp() {
	mark := p.kept.Load()
	timer := time.NewTimer(maxCatchUp)
	defer timer.Stop()
	for {
		p.mu.Lock()
		if p.done >= mark {
			p.mu.Unlock()
			return
		}
		if p.ch == nil {
			p.ch = make(chan struct{})
		}
		ch := p.ch
		p.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return
		}
	}
}
