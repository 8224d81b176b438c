package serving

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// countTap keeps the status of every record and counts what it consumes:
// the cheapest tap that keeps something, so a benchmark of it measures the
// hand-off itself.
type countTap struct {
	consumed int // only the tap's goroutine touches it
}

func (c *countTap) Keep(r *Record) (int, bool) { return r.Code, true }
func (c *countTap) Consume(int)                { c.consumed++ }

// nothingTap keeps nothing.
type nothingTap struct{}

func (nothingTap) Keep(*Record) (struct{}, bool) { return struct{}{}, false }
func (nothingTap) Consume(struct{})              {}

// benchServer returns a server with no models and its metrics; it is
// closed when the benchmark ends.
func benchServer(b *testing.B) (*Server, *Metrics) {
	b.Helper()
	sm, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	s := New(newFakeLoader(), Config{}, zap.NewNop(), sm, nil)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			b.Errorf("Close: %v", err)
		}
	})
	return s, sm
}

// cpuTime is the CPU time the process has used, user and system, on every
// thread: the consumer's wake-ups cost CPU that the producer's ns/op does
// not show.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTapHandOff hands records to one tap whose Consume does trivial
// work: the cost of a kept value reaching the tap's goroutine. In
// "saturated" parallel producers do nothing else, the consumer falls
// behind and most values are dropped (dropped/op). In "paced" one
// producer does about a microsecond of request work before each offer and
// leaves the other processor to the consumer, which keeps up and is woken
// again and again, the way it is under real load.
func BenchmarkTapHandOff(b *testing.B) {
	run := func(b *testing.B, offers func(s *Server)) {
		s, sm := benchServer(b)
		if err := AddTap(s, "count", 0, &countTap{}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		offers(s)
		b.StopTimer()
		b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(testutil.ToFloat64(sm.taps.WithLabelValues("count"))/float64(b.N), "dropped/op")
	}
	b.Run("saturated", func(b *testing.B) {
		run(b, func(s *Server) {
			b.RunParallel(func(pb *testing.PB) {
				r := &Record{Model: "m", Version: "1", ID: "id"}
				for pb.Next() {
					s.taps.hand(r)
				}
			})
		})
	})
	// paced: about a million offers a second; sparse: about 40,000 (as
	// measured on the 2-core machine of the numbers in tap.go).
	for _, pc := range []struct {
		name   string
		rounds int
	}{{"paced", 400}, {"sparse", 12000}} {
		b.Run(pc.name, func(b *testing.B) {
			run(b, func(s *Server) {
				r := &Record{Model: "m", Version: "1", ID: "id"}
				x := uint64(1)
				for range b.N {
					for range pc.rounds {
						x ^= x << 13
						x ^= x >> 7
						x ^= x << 17
					}
					r.Queue = time.Duration(x & 1)
					s.taps.hand(r)
				}
			})
		})
	}
}

// BenchmarkTapRefused is the request path's share with one tap that keeps
// nothing: building the record and offering it.
func BenchmarkTapRefused(b *testing.B) {
	s, _ := benchServer(b)
	if err := AddTap(s, "nothing", 0, nothingTap{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := request("1", 1, 0)
		for pb.Next() {
			s.tapRefused(req, "m", "1", nil)
		}
	})
}
