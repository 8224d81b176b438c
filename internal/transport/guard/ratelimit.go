package guard

import (
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/onnxserve/onnxserve/internal/transport"
)

// LimitRate names the per-client rate limit in its errors, as the
// command's flag spells it.
const LimitRate = "rate-limit"

// rateShards spreads clients over independently locked maps, so requests
// from different clients rarely wait for each other.
const rateShards = 16

// DefaultRateLimitClients bounds the clients a RateLimiter remembers.
const DefaultRateLimitClients = 1 << 16

// RateLimiter is a token bucket per client: each client may send Burst
// requests at once and Rate requests per second on average. It remembers
// at most a bounded number of clients; when full it forgets an arbitrary
// one, which at worst hands that client a fresh bucket. It is safe for
// concurrent use.
type RateLimiter struct {
	rate     float64 // tokens per second
	burst    float64
	perShard int
	seed     maphash.Seed
	shards   [rateShards]rateShard
}

type rateShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

// bucket is one client's tokens at the time of its last request.
type bucket struct {
	tokens float64
	last   time.Time
}

// NewRateLimiter returns a limiter allowing rate requests per second with
// bursts of burst (at least 1) per client, remembering up to maxClients
// clients (0: DefaultRateLimitClients). rate must be > 0.
func NewRateLimiter(rate float64, burst, maxClients int) *RateLimiter {
	if burst < 1 {
		burst = 1
	}
	if maxClients <= 0 {
		maxClients = DefaultRateLimitClients
	}
	l := &RateLimiter{rate: rate, burst: float64(burst), perShard: max(1, maxClients/rateShards), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*bucket)
	}
	return l
}

// Check takes one token from the client's bucket, or fails with an error
// wrapping transport.ErrRateLimited that names the limit.
func (l *RateLimiter) Check(client string) error {
	if l.allowAt(client, time.Now()) {
		return nil
	}
	return &rateError{msg: fmt.Sprintf("too many requests: over the %s of %g requests/s per client (burst %d); retry later", LimitRate, l.rate, int(l.burst))}
}

// allowAt reports whether client may send a request at now, taking a
// token when it may.
func (l *RateLimiter) allowAt(client string, now time.Time) bool {
	sh := &l.shards[maphash.String(l.seed, client)%rateShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.buckets[client]
	if !ok {
		if len(sh.buckets) >= l.perShard {
			for k := range sh.buckets {
				delete(sh.buckets, k)
				break
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		sh.buckets[client] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// rateError is a request refused by the rate limiter.
type rateError struct{ msg string }

func (e *rateError) Error() string { return e.msg }
func (e *rateError) Unwrap() error { return transport.ErrRateLimited }
