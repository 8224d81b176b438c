package batcher

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"testing/synctest"
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

// TestImmediateDispatchBatchesWhileBusy holds every instance busy while
// requests queue: under DispatchImmediate the freed instance takes what is
// queued at once, in batches no larger than the cap, and never waits for
// more (the delay is an hour).
func TestImmediateDispatchBatchesWhileBusy(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		queued    []int // rows of each request queued while busy
		wantBatch []int64
	}{
		{
			name:      "all queued rows in one batch",
			cfg:       Config{MaxBatchSize: 8},
			queued:    []int{1, 2, 1},
			wantBatch: []int64{1, 4},
		},
		{
			name:      "the cap splits what is queued",
			cfg:       Config{MaxBatchSize: 8, BatchCap: 2},
			queued:    []int{1, 1, 1, 1, 1},
			wantBatch: []int64{1, 2, 2, 1},
		},
		{
			name:      "a request above the cap runs alone",
			cfg:       Config{MaxBatchSize: 8, BatchCap: 2},
			queued:    []int{1, 4, 1},
			wantBatch: []int64{1, 1, 4, 1},
		},
		{
			name:      "max batch size bounds a batch",
			cfg:       Config{MaxBatchSize: 3},
			queued:    []int{2, 2, 1},
			wantBatch: []int64{1, 2, 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				started, release := make(chan struct{}, 16), make(chan struct{})
				rec := newRecorder(blocking(started, release, false))
				cfg := tt.cfg
				cfg.Batching, cfg.Dispatch, cfg.MaxQueueDelay = true, DispatchImmediate, time.Hour
				b := newBatcher(t, rec, cfg)
				defer mustClose(t, b)
				start := time.Now()
				replies := []<-chan reply{submitAsync(context.Background(), b, ids("x", 1, 1))}
				<-started // the only instance is busy
				id := int64(100)
				for _, n := range tt.queued {
					var rows []int64
					for range n {
						id++
						rows = append(rows, id)
					}
					replies = append(replies, submitAsync(context.Background(), b, ids("x", 1, rows...)))
					synctest.Wait() // fix the arrival order
				}
				close(release)
				for i, ch := range replies {
					if r := await(t, ch); r.err != nil {
						t.Fatalf("request %d: %v", i, r.err)
					}
				}
				var got []int64
				for _, r := range rec.records() {
					got = append(got, r.rows)
					if d := r.at.Sub(start); d != 0 {
						t.Errorf("a batch started after %v: a free instance waited", d)
					}
				}
				if !slices.Equal(got, tt.wantBatch) {
					t.Errorf("batch rows %v, want %v", got, tt.wantBatch)
				}
			})
		})
	}
}

// TestImmediateDispatchUsesIdleInstances submits two requests at once to
// two idle instances: both run at once, side by side, rather than one
// waiting to join the other's batch.
func TestImmediateDispatchUsesIdleInstances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started, release := make(chan struct{}, 4), make(chan struct{})
		rec := newRecorder(blocking(started, release, false))
		b := newBatcher(t, rec, Config{MaxBatchSize: 8, Batching: true, Instances: 2, Dispatch: DispatchImmediate, MaxQueueDelay: time.Hour})
		defer mustClose(t, b)
		a := submitAsync(context.Background(), b, ids("x", 1, 1))
		<-started
		c := submitAsync(context.Background(), b, ids("x", 1, 2))
		<-started // the second instance took the second request at once
		close(release)
		for _, ch := range []<-chan reply{a, c} {
			if r := await(t, ch); r.err != nil {
				t.Fatal(r.err)
			}
		}
		if n := len(rec.records()); n != 2 {
			t.Errorf("%d batches, want 2", n)
		}
	})
}

// TestImmediateDispatchLetsRunnableCallersJoin: on one CPU, callers that
// are runnable when the worker wakes for the first request (as gRPC
// handlers decoding requests are under load) join its batch, instead of
// every request running alone because the worker is scheduled before them.
func TestImmediateDispatchLetsRunnableCallersJoin(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	rec := newRecorder(addOne)
	b := newBatcher(t, rec, Config{MaxBatchSize: 64, Batching: true, Dispatch: DispatchImmediate, MaxQueueDelay: time.Hour})
	defer mustClose(t, b)
	const callers = 16
	var replies []<-chan reply
	for i := range callers {
		// go statements do not yield: every caller is runnable, none has
		// queued yet, when this goroutine blocks below.
		replies = append(replies, submitAsync(context.Background(), b, ids("x", 1, int64(i))))
	}
	for _, ch := range replies {
		if r := await(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	recs := rec.records()
	rows := int64(0)
	for _, r := range recs {
		rows += r.rows
	}
	// Without the yield every request runs alone (16 batches; the race
	// detector's scheduling makes that 2 to 7); with it, one or two.
	if rows != callers || len(recs) > 2 {
		t.Errorf("%d batches holding %d rows, want all %d rows in at most 2 batches", len(recs), rows, callers)
	}
}
