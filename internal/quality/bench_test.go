package quality

import (
	"encoding/binary"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// BenchmarkKeepConsume is the loop's cost per kept prediction as the
// server pays it: Keep on the request path, Consume on the tap's
// goroutine and the store's commits (synced, as in the server), for a
// one-row answer of a ten-class classifier whose id the server made (a
// UUID v7, as for a request that brought none). bench/QUALITY.md compares
// it with the server's whole cost per inference.
func BenchmarkKeepConsume(b *testing.B) {
	spec := Spec{Task: TaskClassification, Classes: 10, Sample: 1, TTL: 72 * time.Hour, Window: time.Hour, Versions: []string{"2"}}
	q, err := New(Config{StateDir: b.TempDir(), Resolve: specs(map[string]Spec{"classifier": spec})}, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	// Ids are made a chunk at a time outside the measured CPU time, so
	// neither their making nor a heap of b.N live strings (which the
	// collector would scan) weighs on the figure.
	ids := make([]string, 4096)
	base := uuid.Must(uuid.NewV7())
	fill := func(from int) {
		for j := range ids {
			u := base
			binary.BigEndian.PutUint64(u[8:], uint64(from+j))
			ids[j] = u.String()
		}
	}
	vals := make([]float32, 10)
	for i := range vals {
		vals[i] = float32(i%7) / 10
	}
	r := serving.Record{Model: "classifier", Version: "2", Class: serving.ClassOK, Code: 200,
		Arrival: time.Now(), Outputs: []tensor.Tensor{fp32(1, 10, vals...)}}
	b.ReportAllocs()
	var excluded time.Duration
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		if i%len(ids) == 0 {
			b.StopTimer()
			c := cpuTime()
			fill(i)
			excluded += cpuTime() - c
			b.StartTimer()
		}
		r.ID = ids[i%len(ids)]
		k, ok := q.Keep(&r)
		if !ok {
			b.Fatal("nothing kept")
		}
		q.Consume(k)
	}
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
	// The commits' fsync waits take time but no CPU; what the server
	// loses to the loop is CPU, so that is reported beside ns/op.
	b.ReportMetric(float64((cpuTime()-cpu0-excluded).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
