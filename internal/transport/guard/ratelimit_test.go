package guard

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/transport"
)

func TestRateLimiterBucket(t *testing.T) {
	l := NewRateLimiter(10, 3, 0) // a token every 100ms, bursts of 3
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at     time.Duration
		client string
		want   bool
	}{
		{0, "a", true},
		{0, "a", true},
		{0, "a", true},
		{0, "a", false}, // the burst is spent
		{0, "b", true},  // another client has its own bucket
		{50 * time.Millisecond, "a", false},
		{100 * time.Millisecond, "a", true}, // one token came back
		{100 * time.Millisecond, "a", false},
		{10 * time.Second, "a", true}, // refilled, but only up to the burst
		{10 * time.Second, "a", true},
		{10 * time.Second, "a", true},
		{10 * time.Second, "a", false},
		// A clock step backwards takes nothing and gives nothing.
		{5 * time.Second, "a", false},
	}
	for i, s := range steps {
		if got := l.allowAt(s.client, t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d (%s at %v): allowed %v, want %v", i, s.client, s.at, got, s.want)
		}
	}
}

func TestRateLimiterError(t *testing.T) {
	l := NewRateLimiter(0.001, 1, 0)
	if err := l.Check("c"); err != nil {
		t.Fatalf("first request: %v", err)
	}
	err := l.Check("c")
	if !errors.Is(err, transport.ErrRateLimited) || !strings.Contains(err.Error(), LimitRate) {
		t.Fatalf("second request: %v, want transport.ErrRateLimited naming %s", err, LimitRate)
	}
	if _, code := transport.Status(err); code != 429 {
		t.Fatalf("status %d, want 429", code)
	}
}

// TestRateLimiterBoundsClients checks that a flood of client keys cannot
// grow the limiter without bound.
func TestRateLimiterBoundsClients(t *testing.T) {
	l := NewRateLimiter(1, 1, 32)
	now := time.Unix(1000, 0)
	for i := range 10000 {
		if !l.allowAt(fmt.Sprint("client-", i), now) {
			t.Fatalf("a new client %d was refused", i)
		}
	}
	total := 0
	for i := range l.shards {
		total += len(l.shards[i].buckets)
	}
	if total > 32 {
		t.Fatalf("%d clients remembered, want at most 32", total)
	}
}
