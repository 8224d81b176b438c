package batcher

import (
	"context"
	"testing"
	"time"
)

// TestPreferredSizeDoesNotCapQueuedWork queues requests while the only
// instance is busy: the next batch takes all of them, up to the maximum,
// rather than stopping at the first preferred size.
func TestPreferredSizeDoesNotCapQueuedWork(t *testing.T) {
	started, release := make(chan struct{}, 8), make(chan struct{})
	rec := newRecorder(blocking(started, release, false))
	b := newBatcher(t, rec, Config{MaxBatchSize: 8, Batching: true, MaxQueueDelay: time.Hour, PreferredBatchSizes: []int{1, 2}})
	defer mustClose(t, b)
	first := submitAsync(context.Background(), b, ids("x", 1, 1))
	<-started // the instance is busy with the first request
	var replies []<-chan reply
	for i := range 5 {
		replies = append(replies, submitAsync(context.Background(), b, ids("x", 1, int64(10+i))))
	}
	waitQueued(t, b, 5)
	close(release)
	await(t, first)
	for _, ch := range replies {
		if r := await(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	recs := rec.records()
	if len(recs) != 2 || recs[0].rows != 1 || recs[1].rows != 5 {
		t.Errorf("batches %+v, want one of 1 row, then one of all 5 queued rows", recs)
	}
}

func waitQueued(t *testing.T, b *Batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for b.QueueDepth() < n {
		if time.Now().After(deadline) {
			t.Fatalf("queue depth %d, want %d", b.QueueDepth(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
