package guard

import (
	"strconv"
	"sync/atomic"

	"github.com/onnxserve/onnxserve/internal/transport"
)

// LimitInflightBytes names the memory budget in errors, as the command's
// flag spells it.
const LimitInflightBytes = "max-inflight-bytes"

// Budget bounds the request bytes the server holds at once, over every
// connection and both protocols: a request is charged its size before the
// front end allocates for it, and refunded once it is answered. A charge
// that does not fit fails at once (nothing waits for room), so a flood of
// large requests is answered 429 / RESOURCE_EXHAUSTED instead of growing
// the process until the kernel kills it. A nil *Budget has no limit. Safe
// for concurrent use.
type Budget struct {
	max      int64
	used     atomic.Int64
	rejected atomic.Uint64
}

// NewBudget returns a budget of max bytes; max <= 0 returns nil, no limit.
func NewBudget(max int64) *Budget {
	if max <= 0 {
		return nil
	}
	return &Budget{max: max}
}

// Charge takes n bytes from the budget, or fails with an error that maps
// to 429 / RESOURCE_EXHAUSTED and names the flag, taking nothing, when
// they do not fit. A request larger than the whole budget can never fit
// and fails the same way. Every successful Charge needs one Refund of the
// same n.
func (b *Budget) Charge(n int64) error {
	if b == nil || n <= 0 {
		return nil
	}
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		b.rejected.Add(1)
		return &budgetError{n: n, max: b.max}
	}
	return nil
}

// Refund gives back n bytes of an earlier Charge.
func (b *Budget) Refund(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.used.Add(-n)
}

// Max returns the budget in bytes, 0 for none.
func (b *Budget) Max() int64 {
	if b == nil {
		return 0
	}
	return b.max
}

// InUse returns the bytes charged and not yet refunded.
func (b *Budget) InUse() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Rejected returns how many charges failed so far.
func (b *Budget) Rejected() uint64 {
	if b == nil {
		return 0
	}
	return b.rejected.Load()
}

// budgetError is a charge that did not fit: the server is busy with other
// requests' bytes, so the client should retry later.
type budgetError struct{ n, max int64 }

func (e *budgetError) Error() string {
	if e.n > e.max {
		return "request of " + strconv.FormatInt(e.n, 10) + " bytes exceeds the whole " + LimitInflightBytes + " memory budget of " + strconv.FormatInt(e.max, 10) + " bytes"
	}
	return "the server holds its " + LimitInflightBytes + " memory budget of " + strconv.FormatInt(e.max, 10) + " bytes of requests in flight; retry later"
}

func (e *budgetError) Unwrap() error { return transport.ErrMemoryBudget }
