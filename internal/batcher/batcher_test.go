package batcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

func sortedByName(in []tensor.Tensor) []tensor.Tensor {
	return slices.SortedFunc(slices.Values(in), func(x, y tensor.Tensor) int { return strings.Compare(x.Name, y.Name) })
}

// TestConcurrentRequestsGetTheirOwnRows is the property test: many clients
// at once, each with a random number of uniquely valued rows, each must get
// back exactly its own rows, and every row must run exactly once.
func TestConcurrentRequestsGetTheirOwnRows(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		wantMerging bool
	}{
		{"batching, one instance, no delay", Config{MaxBatchSize: 8, Batching: true, MaxQueueSize: 1000}, false},
		{"batching, three instances, delay and preferred size", Config{MaxBatchSize: 8, Batching: true, MaxQueueDelay: 2 * time.Millisecond, PreferredBatchSizes: []int{4}, MaxQueueSize: 1000, Instances: 3}, true},
		{"batching off, two instances", Config{MaxBatchSize: 8, MaxQueueSize: 1000, Instances: 2}, false},
	}
	const clients = 300
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{next: addOne}
			b := newBatcher(t, rec, tt.cfg)
			var nextID, submitted atomic.Int64
			start := make(chan struct{})
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(c), 7))
					rows := make([]int64, 1+rng.IntN(tt.cfg.MaxBatchSize))
					for i := range rows {
						rows[i] = nextID.Add(1)
					}
					submitted.Add(int64(len(rows)))
					in := []tensor.Tensor{ids("a", 3, rows...), ids32("b", 1, rows...)}
					first := in[0].Name
					<-start
					out, err := b.Submit(context.Background(), in)
					if err != nil {
						t.Errorf("client %d: %v", c, err)
						return
					}
					if in[0].Name != first {
						t.Errorf("client %d: Submit reordered the caller's inputs", c)
					}
					checkAddOne(t, sortedByName(in), out)
				})
			}
			close(start)
			wg.Wait()
			mustClose(t, b)

			seen := make(map[int64]bool)
			for _, r := range rec.records() {
				if r.rows > int64(tt.cfg.MaxBatchSize) {
					t.Errorf("batch of %d rows exceeds max batch size %d", r.rows, tt.cfg.MaxBatchSize)
				}
				for _, id := range r.ids {
					if seen[id] {
						t.Errorf("row %d ran twice", id)
					}
					seen[id] = true
				}
			}
			if int64(len(seen)) != submitted.Load() {
				t.Errorf("%d rows ran, %d were submitted", len(seen), submitted.Load())
			}
			if n := len(rec.records()); tt.wantMerging && n >= clients {
				t.Errorf("%d batches for %d requests: nothing was merged", n, clients)
			}
		})
	}
}

func TestMaxQueueDelayHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 10 * time.Millisecond
		rec := newRecorder(addOne)
		b := newBatcher(t, rec, Config{MaxBatchSize: 8, Batching: true, MaxQueueDelay: delay})
		defer mustClose(t, b)
		start := time.Now()
		in := ids("x", 2, 1)
		ch := submitAsync(context.Background(), b, in)

		time.Sleep(delay - time.Nanosecond)
		synctest.Wait()
		if n := len(rec.records()); n != 0 {
			t.Fatalf("%d batches ran before the max queue delay", n)
		}
		notYet(t, ch, "before the max queue delay")

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		r := await(t, ch)
		if r.err != nil {
			t.Fatalf("Submit: %v", r.err)
		}
		checkAddOne(t, []tensor.Tensor{in}, r.out)
		recs := rec.records()
		if len(recs) != 1 {
			t.Fatalf("%d batches ran, want 1", len(recs))
		}
		if got := recs[0].at.Sub(start); got != delay {
			t.Errorf("lone request dispatched after %v, want %v", got, delay)
		}
	})
}

// TestDispatchRules submits requests of the given row counts in order, all
// at time zero, and checks which batches ran when.
func TestDispatchRules(t *testing.T) {
	const delay = 10 * time.Millisecond
	type batch struct {
		rows int64
		at   time.Duration
	}
	tests := []struct {
		name string
		cfg  Config
		rows []int
		want []batch
	}{
		{
			name: "preferred size reached dispatches at once",
			cfg:  Config{MaxBatchSize: 8, PreferredBatchSizes: []int{4}},
			rows: []int{2, 2},
			want: []batch{{4, 0}},
		},
		{
			name: "any preferred size counts",
			cfg:  Config{MaxBatchSize: 8, PreferredBatchSizes: []int{2, 6}},
			rows: []int{1, 1, 3, 3},
			want: []batch{{2, 0}, {6, 0}},
		},
		{
			name: "passing over a preferred size waits for the delay",
			cfg:  Config{MaxBatchSize: 8, PreferredBatchSizes: []int{4}},
			rows: []int{3, 2},
			want: []batch{{5, delay}},
		},
		{
			name: "max batch size reached dispatches at once",
			cfg:  Config{MaxBatchSize: 4},
			rows: []int{1, 3},
			want: []batch{{4, 0}},
		},
		{
			name: "a request that does not fit starts the next batch",
			cfg:  Config{MaxBatchSize: 4},
			rows: []int{3, 2, 2},
			want: []batch{{3, 0}, {4, 0}},
		},
		{
			name: "the next batch waits for its own delay",
			cfg:  Config{MaxBatchSize: 4},
			rows: []int{3, 2},
			want: []batch{{3, 0}, {2, delay}},
		},
		{
			name: "one request at max batch size runs at once",
			cfg:  Config{MaxBatchSize: 4},
			rows: []int{4},
			want: []batch{{4, 0}},
		},
		{
			name: "immediate: a lone request never waits for the delay",
			cfg:  Config{MaxBatchSize: 8, Dispatch: DispatchImmediate},
			rows: []int{1},
			want: []batch{{1, 0}},
		},
		{
			name: "immediate: an idle instance runs each arrival at once",
			cfg:  Config{MaxBatchSize: 8, Dispatch: DispatchImmediate, PreferredBatchSizes: []int{4}},
			rows: []int{2, 1, 3},
			want: []batch{{2, 0}, {1, 0}, {3, 0}},
		},
		{
			name: "wait: the cap dispatches at once",
			cfg:  Config{MaxBatchSize: 8, BatchCap: 2},
			rows: []int{1, 1, 1},
			want: []batch{{2, 0}, {1, delay}},
		},
		{
			name: "wait: a request above the cap runs alone at once",
			cfg:  Config{MaxBatchSize: 8, BatchCap: 2},
			rows: []int{1, 5},
			want: []batch{{1, 0}, {5, 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := newRecorder(addOne)
				cfg := tt.cfg
				cfg.Batching, cfg.MaxQueueDelay = true, delay
				b := newBatcher(t, rec, cfg)
				defer mustClose(t, b)
				start := time.Now()
				var replies []<-chan reply
				var ins []tensor.Tensor
				id := int64(0)
				for _, n := range tt.rows {
					var rowIDs []int64
					for range n {
						id++
						rowIDs = append(rowIDs, id)
					}
					in := ids("x", 1, rowIDs...)
					ins = append(ins, in)
					replies = append(replies, submitAsync(context.Background(), b, in))
					synctest.Wait() // fix the arrival order
				}
				time.Sleep(2 * delay)
				synctest.Wait()
				for i, ch := range replies {
					r := await(t, ch)
					if r.err != nil {
						t.Fatalf("request %d: %v", i, r.err)
					}
					checkAddOne(t, ins[i:i+1], r.out)
				}
				var got []batch
				for _, r := range rec.records() {
					got = append(got, batch{r.rows, r.at.Sub(start)})
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("batches (rows, dispatched at) = %v, want %v", got, tt.want)
				}
			})
		})
	}
}

func TestFullQueueRejects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started, release := make(chan struct{}, 10), make(chan struct{})
		rec := newRecorder(blocking(started, release, false))
		b := newBatcher(t, rec, Config{MaxBatchSize: 4, Batching: true, MaxQueueSize: 2})
		defer mustClose(t, b)
		ctx := context.Background()
		running := submitAsync(ctx, b, ids("x", 1, 1))
		<-started
		queued := []<-chan reply{submitAsync(ctx, b, ids("x", 1, 2)), submitAsync(ctx, b, ids("x", 1, 3))}
		synctest.Wait()
		if got := b.QueueDepth(); got != 2 {
			t.Fatalf("QueueDepth = %d, want 2", got)
		}

		_, err := b.Submit(ctx, []tensor.Tensor{ids("x", 1, 4)})
		if !errors.Is(err, ErrOverloaded) {
			t.Fatalf("Submit on a full queue: %v, want ErrOverloaded", err)
		}
		if got := b.Inflight(); got != 3 {
			t.Errorf("Inflight = %d after a rejection, want 3", got)
		}

		close(release)
		for i, ch := range append(queued, running) {
			if r := await(t, ch); r.err != nil {
				t.Errorf("admitted request %d: %v", i, r.err)
			}
		}
		for _, r := range rec.records() {
			if slices.Contains(r.ids, 4) {
				t.Error("the rejected request ran")
			}
		}
	})
}

// TestExpiredRequestsNeverRun holds the only instance busy while a queued
// request's deadline passes or its context is cancelled.
func TestExpiredRequestsNeverRun(t *testing.T) {
	const wait = 5 * time.Millisecond
	tests := []struct {
		name    string
		cfg     Config
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{
			name:    "context deadline",
			ctx:     func() (context.Context, context.CancelFunc) { return context.WithTimeout(context.Background(), wait) },
			wantErr: context.DeadlineExceeded,
		},
		{
			name:    "default timeout",
			cfg:     Config{DefaultTimeout: wait},
			ctx:     func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			wantErr: context.DeadlineExceeded,
		},
		{
			name: "cancelled",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(wait, cancel)
				return ctx, cancel
			},
			wantErr: context.Canceled,
		},
		{
			name: "context deadline shorter than the default timeout",
			cfg:  Config{DefaultTimeout: time.Hour},
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), wait)
			},
			wantErr: context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				started, release := make(chan struct{}, 10), make(chan struct{})
				rec := newRecorder(blocking(started, release, false))
				cfg := tt.cfg
				cfg.MaxBatchSize, cfg.Batching = 4, true
				b := newBatcher(t, rec, cfg)
				defer mustClose(t, b)
				running := submitAsync(context.Background(), b, ids("x", 1, 1))
				<-started

				ctx, cancel := tt.ctx()
				defer cancel()
				expiring := submitAsync(ctx, b, ids("x", 1, 2))
				time.Sleep(wait - time.Nanosecond)
				synctest.Wait()
				notYet(t, expiring, "before its deadline")
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				select {
				case r := <-expiring:
					if !errors.Is(r.err, tt.wantErr) {
						t.Errorf("expired request: %v, want %v", r.err, tt.wantErr)
					}
				default:
					t.Fatal("Submit did not return when its deadline passed")
				}
				if q, n := b.QueueDepth(), b.Inflight(); q != 0 || n != 1 {
					t.Errorf("QueueDepth, Inflight = %d, %d after expiry, want 0, 1", q, n)
				}

				close(release)
				if r := await(t, running); r.err != nil {
					t.Errorf("running request: %v", r.err)
				}
				mustClose(t, b)
				for _, r := range rec.records() {
					if slices.Contains(r.ids, 2) {
						t.Error("the expired request ran")
					}
				}
			})
		})
	}
}

func TestDefaultTimeoutBoundsOnlyTheQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started, release := make(chan struct{}, 10), make(chan struct{})
		b := newBatcher(t, newRecorder(blocking(started, release, false)),
			Config{MaxBatchSize: 4, DefaultTimeout: time.Millisecond})
		defer mustClose(t, b)
		in := ids("x", 1, 1)
		ch := submitAsync(context.Background(), b, in)
		<-started
		time.Sleep(time.Second)
		synctest.Wait()
		notYet(t, ch, "a running request past the default timeout")
		close(release)
		r := await(t, ch)
		if r.err != nil {
			t.Fatalf("Submit: %v", r.err)
		}
		checkAddOne(t, []tensor.Tensor{in}, r.out)
	})
}

func TestCancelWhileRunningReturnsPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started, release := make(chan struct{}, 10), make(chan struct{})
		b := newBatcher(t, newRecorder(blocking(started, release, false)), Config{MaxBatchSize: 4})
		ctx, cancel := context.WithCancel(context.Background())
		ch := submitAsync(ctx, b, ids("x", 1, 1))
		<-started
		cancel()
		synctest.Wait()
		select {
		case r := <-ch:
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("Submit: %v, want context.Canceled", r.err)
			}
		default:
			t.Fatal("Submit did not return when its context was cancelled")
		}
		if n := b.Inflight(); n != 1 {
			t.Errorf("Inflight = %d while the batch still runs, want 1", n)
		}
		close(release)
		synctest.Wait()
		if n := b.Inflight(); n != 0 {
			t.Errorf("Inflight = %d once the batch finished, want 0", n)
		}

		// The discarded result went nowhere; the batcher goes on serving.
		in := []tensor.Tensor{ids("x", 1, 2)}
		out, err := b.Submit(context.Background(), in)
		if err != nil {
			t.Fatalf("Submit after a cancelled request: %v", err)
		}
		checkAddOne(t, in, out)
		mustClose(t, b)
	})
}

func TestCancelledBeforeSubmit(t *testing.T) {
	rec := newRecorder(addOne)
	b := newBatcher(t, rec, Config{MaxBatchSize: 4})
	defer mustClose(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Submit(ctx, []tensor.Tensor{ids("x", 1, 1)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Submit: %v, want context.Canceled", err)
	}
	if n := len(rec.records()); n != 0 {
		t.Errorf("runner called %d times", n)
	}
}

func TestCloseDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started, release := make(chan struct{}, 10), make(chan struct{})
		rec := newRecorder(blocking(started, release, false))
		b := newBatcher(t, rec, Config{MaxBatchSize: 2, Batching: true, MaxQueueDelay: time.Hour, MaxQueueSize: 10})
		ctx := context.Background()
		ins := []tensor.Tensor{ids("x", 1, 1, 2), ids("x", 1, 3), ids("x", 1, 4), ids("x", 1, 5)}
		var replies []<-chan reply
		for _, in := range ins {
			replies = append(replies, submitAsync(ctx, b, in))
			synctest.Wait()
		}
		<-started

		closed := make(chan error, 1)
		go func() { closed <- b.Close(ctx) }()
		synctest.Wait()
		if _, err := b.Submit(ctx, []tensor.Tensor{ids("x", 1, 6)}); !errors.Is(err, ErrClosed) {
			t.Errorf("Submit while closing: %v, want ErrClosed", err)
		}
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) while a batch was running", err)
		default:
		}

		close(release)
		for i, ch := range replies {
			r := await(t, ch)
			if r.err != nil {
				t.Errorf("request %d: %v", i, r.err)
				continue
			}
			checkAddOne(t, ins[i:i+1], r.out)
		}
		if err := <-closed; err != nil {
			t.Errorf("Close: %v", err)
		}
		var ran []int64
		for _, r := range rec.records() {
			ran = append(ran, r.ids...)
		}
		slices.Sort(ran)
		if want := []int64{1, 2, 3, 4, 5}; !slices.Equal(ran, want) {
			t.Errorf("rows run = %v, want %v", ran, want)
		}
		if err := b.Close(ctx); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestCloseDeadlineFailsQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started, release := make(chan struct{}, 10), make(chan struct{})
		runCtxErr := make(chan error, 1)
		rec := newRecorder(func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			started <- struct{}{}
			<-release
			runCtxErr <- ctx.Err()
			return addOne(ctx, in)
		})
		b := newBatcher(t, rec, Config{MaxBatchSize: 1, Batching: true, MaxQueueSize: 10})
		running := submitAsync(context.Background(), b, ids("x", 1, 1))
		<-started
		queued := []<-chan reply{
			submitAsync(context.Background(), b, ids("x", 1, 2)),
			submitAsync(context.Background(), b, ids("x", 1, 3)),
		}
		synctest.Wait()

		const grace = 10 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		closed := make(chan error, 1)
		go func() { closed <- b.Close(ctx) }()
		time.Sleep(grace)
		synctest.Wait()
		for i, ch := range queued {
			select {
			case r := <-ch:
				if !errors.Is(r.err, ErrClosed) {
					t.Errorf("queued request %d: %v, want ErrClosed", i, r.err)
				}
			default:
				t.Errorf("queued request %d not answered when Close's deadline passed", i)
			}
		}
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) before the running batch finished", err)
		default:
		}

		close(release)
		if err := <-closed; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close: %v, want context.DeadlineExceeded", err)
		}
		if err := <-runCtxErr; !errors.Is(err, context.Canceled) {
			t.Errorf("running batch's context: %v, want it cancelled", err)
		}
		if r := await(t, running); r.err != nil {
			t.Errorf("running request: %v", r.err)
		}
		if n := len(rec.records()); n != 1 {
			t.Errorf("%d batches ran, want 1", n)
		}
		if n := b.Inflight(); n != 0 {
			t.Errorf("Inflight = %d after Close, want 0", n)
		}
	})
}

// TestLayoutsBatchSeparately interleaves requests of five layouts; each
// layout must form its own batch.
func TestLayoutsBatchSeparately(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder(addOne)
		b := newBatcher(t, rec, Config{MaxBatchSize: 8, Batching: true, MaxQueueDelay: 10 * time.Millisecond})
		defer mustClose(t, b)
		// The hundreds digit of an id names its layout.
		requests := [][]tensor.Tensor{
			{ids("x", 2, 101)},
			{ids("x", 3, 201)},
			{ids32("x", 2, 301)},
			{ids("z", 2, 401)},
			{ids("a", 1, 501), ids("b", 1, 501)},
			{ids("x", 2, 102, 103)},
			{ids("x", 3, 202)},
			{ids32("x", 2, 302, 303)},
			{ids("z", 2, 402)},
			{ids("a", 1, 502), ids("b", 1, 502)},
		}
		var replies []<-chan reply
		for _, in := range requests {
			replies = append(replies, submitAsync(context.Background(), b, in...))
			synctest.Wait()
		}
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		for i, ch := range replies {
			r := await(t, ch)
			if r.err != nil {
				t.Errorf("request %d: %v", i, r.err)
				continue
			}
			checkAddOne(t, sortedByName(requests[i]), r.out)
		}

		recs := rec.records()
		layouts := make(map[string]bool)
		groups := make(map[int64][]int64)
		for _, r := range recs {
			if layouts[r.layout] {
				t.Errorf("layout %s ran in more than one batch", r.layout)
			}
			layouts[r.layout] = true
			g := r.ids[0] / 100
			for _, id := range r.ids {
				if id/100 != g {
					t.Errorf("batch %v mixes layouts", r.ids)
					break
				}
			}
			groups[g] = r.ids
		}
		if len(recs) != 5 {
			t.Errorf("%d batches, want one for each of 5 layouts", len(recs))
		}
		for g, want := range map[int64][]int64{1: {101, 102, 103}, 2: {201, 202}, 3: {301, 302, 303}, 4: {401, 402}, 5: {501, 502}} {
			if !slices.Equal(groups[g], want) {
				t.Errorf("layout %d batch = %v, want %v", g, groups[g], want)
			}
		}
	})
}

// TestRunFailureFailsOnlyItsRequest: a batch that fails is isolated, and
// only the request at fault gets the runner's error; a batch beside it is
// untouched.
func TestRunFailureFailsOnlyItsRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder(func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			if slices.Contains(rowIDs(in[0]), 13) {
				return nil, errBoom
			}
			return addOne(ctx, in)
		})
		b := newBatcher(t, rec, Config{MaxBatchSize: 2, Batching: true, MaxQueueDelay: time.Hour})
		defer mustClose(t, b)
		ctx := context.Background()
		var replies []<-chan reply
		var ins [][]tensor.Tensor
		for _, id := range []int64{11, 13, 21, 22} {
			in := []tensor.Tensor{ids("x", 1, id)}
			ins = append(ins, in)
			replies = append(replies, submitAsync(ctx, b, in...))
			synctest.Wait()
		}
		for i, ch := range replies {
			r := await(t, ch)
			if i == 1 {
				if !errors.Is(r.err, errBoom) || !errors.Is(r.err, ErrRejected) {
					t.Errorf("the request at fault: %v, want a rejection with the runner's error", r.err)
				}
				continue
			}
			if r.err != nil {
				t.Errorf("request %d: %v", i, r.err)
				continue
			}
			checkAddOne(t, ins[i], r.out)
		}
		// The failed batch and its two halves, then the good batch.
		if n := len(rec.records()); n != 4 {
			t.Errorf("%d runs, want 4", n)
		}
	})
}

func TestPanicIsRecovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.ErrorLevel)
		rec := newRecorder(func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			if slices.Contains(rowIDs(in[0]), 13) {
				panic("model exploded")
			}
			return addOne(ctx, in)
		})
		b, err := New(rec, Config{MaxBatchSize: 2, Batching: true, MaxQueueDelay: time.Hour}, zap.New(core), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer mustClose(t, b)
		ctx := context.Background()
		first, second := submitAsync(ctx, b, ids("x", 1, 12)), submitAsync(ctx, b, ids("x", 1, 13))
		if r := await(t, first); r.err != nil {
			t.Errorf("the companion of the panicking request: %v", r.err)
		}
		for _, ch := range []<-chan reply{second} {
			if r := await(t, ch); !errors.Is(r.err, ErrPanic) || !strings.Contains(r.err.Error(), "model exploded") || errors.Is(r.err, tensor.ErrInvalid) {
				t.Errorf("request in the panicking batch: %v, want ErrPanic with the panic value, not the client's fault", r.err)
			}
		}
		// The batch, then the request at fault alone.
		if logs.FilterMessage("runner panicked").Len() != 2 {
			t.Errorf("panic logs = %v, want two at error level", logs.All())
		}
		in := []tensor.Tensor{ids("x", 1, 14, 15)}
		out, err := b.Submit(ctx, in)
		if err != nil {
			t.Fatalf("Submit after a panic: %v", err)
		}
		checkAddOne(t, in, out)
	})
}

// TestBrokenRunner feeds two one-row requests into one batch through
// runners that break the contract: each request gets an error that does
// not blame the client, and the batcher goes on.
func TestBrokenRunner(t *testing.T) {
	tests := []struct {
		name string
		out  []tensor.Tensor
		want string
	}{
		{"no outputs", nil, "no outputs"},
		{"output with the wrong batch size", []tensor.Tensor{ids("y", 1, 1, 2, 3)}, "shape [3 1]"},
		{"scalar output", []tensor.Tensor{{Name: "y", DataType: tensor.Int64, Data: make([]byte, 8)}}, "shape []"},
		{"output data too short to split", []tensor.Tensor{{Name: "y", DataType: tensor.Int64, Shape: []int64{2, 1}, Data: make([]byte, 8)}}, "split output"},
		{"second output wrong", []tensor.Tensor{ids("y", 1, 1, 2), ids("z", 1, 1)}, `output "z"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var calls atomic.Int32
				rec := newRecorder(func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
					if calls.Add(1) == 1 {
						return tt.out, nil
					}
					return addOne(ctx, in)
				})
				b := newBatcher(t, rec, Config{MaxBatchSize: 2, Batching: true, MaxQueueDelay: time.Hour})
				defer mustClose(t, b)
				ctx := context.Background()
				replies := []<-chan reply{submitAsync(ctx, b, ids("x", 1, 1)), submitAsync(ctx, b, ids("x", 1, 2))}
				for i, ch := range replies {
					r := await(t, ch)
					if r.err == nil || !strings.Contains(r.err.Error(), tt.want) {
						t.Errorf("request %d: %v, want an error containing %q", i, r.err, tt.want)
					}
					if errors.Is(r.err, tensor.ErrInvalid) {
						t.Errorf("request %d: runner's fault reported as invalid input: %v", i, r.err)
					}
				}
				in := []tensor.Tensor{ids("x", 1, 3, 4)}
				out, err := b.Submit(ctx, in)
				if err != nil {
					t.Fatalf("Submit after a broken batch: %v", err)
				}
				checkAddOne(t, in, out)
			})
		})
	}
}

func TestNoBatchDimensionPassesThrough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		scalar := func(v byte) tensor.Tensor {
			return tensor.Tensor{Name: "s", DataType: tensor.Uint8, Data: []byte{v}}
		}
		var mu sync.Mutex
		outs := make(map[byte][]tensor.Tensor)
		rec := newRecorder(func(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			if len(in) != 1 || len(in[0].Data) != 1 {
				return nil, fmt.Errorf("runner got %v, want one scalar", in)
			}
			// A scalar output, which a batched model could not have.
			out := []tensor.Tensor{{Name: "y", DataType: tensor.Uint8, Data: []byte{in[0].Data[0] + 1}}}
			mu.Lock()
			outs[in[0].Data[0]] = out
			mu.Unlock()
			return out, nil
		})
		b := newBatcher(t, rec, Config{MaxBatchSize: 0, Batching: true, MaxQueueDelay: time.Hour})
		defer mustClose(t, b)
		var replies []<-chan reply
		for v := range byte(3) {
			replies = append(replies, submitAsync(context.Background(), b, scalar(v)))
		}
		synctest.Wait()
		for _, ch := range replies {
			r := await(t, ch)
			if r.err != nil {
				t.Fatalf("Submit: %v", r.err)
			}
			v := r.out[0].Data[0] - 1
			mu.Lock()
			want := outs[v]
			mu.Unlock()
			if &r.out[0] != &want[0] {
				t.Errorf("request %d: outputs were not returned as the runner made them", v)
			}
		}
		if n := len(rec.records()); n != 3 {
			t.Errorf("%d runs for 3 requests, want each alone", n)
		}
	})
}

func TestLoneRequestIsNotCopied(t *testing.T) {
	in := ids("x", 4, 1, 2)
	rec := newRecorder(func(ctx context.Context, got []tensor.Tensor) ([]tensor.Tensor, error) {
		if &got[0].Data[0] != &in.Data[0] {
			return nil, errors.New("the lone request's input was copied")
		}
		return addOne(ctx, got)
	})
	b := newBatcher(t, rec, Config{MaxBatchSize: 8, Batching: true})
	defer mustClose(t, b)
	out, err := b.Submit(context.Background(), []tensor.Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	checkAddOne(t, []tensor.Tensor{in}, out)
}

func TestBatchingOffRunsEachAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder(addOne)
		b := newBatcher(t, rec, Config{MaxBatchSize: 8, Batching: false, MaxQueueDelay: time.Hour, PreferredBatchSizes: []int{4}})
		defer mustClose(t, b)
		var replies []<-chan reply
		var ins []tensor.Tensor
		for i := range int64(5) {
			in := ids("x", 1, 10*i+1, 10*i+2)
			ins = append(ins, in)
			replies = append(replies, submitAsync(context.Background(), b, in))
		}
		synctest.Wait()
		for i, ch := range replies {
			select {
			case r := <-ch:
				if r.err != nil {
					t.Fatalf("request %d: %v", i, r.err)
				}
				checkAddOne(t, ins[i:i+1], r.out)
			default:
				t.Fatalf("request %d waited although batching is off", i)
			}
		}
		recs := rec.records()
		if len(recs) != 5 {
			t.Errorf("%d runs for 5 requests", len(recs))
		}
		for _, r := range recs {
			if r.rows != 2 {
				t.Errorf("a run of %d rows, want each 2-row request alone", r.rows)
			}
		}
	})
}

func TestInstancesRunInParallel(t *testing.T) {
	const n = 3
	var inside atomic.Int32
	all := make(chan struct{})
	r := runnerFunc(func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
		if inside.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
			return addOne(ctx, in)
		case <-time.After(testTimeout):
			return nil, errors.New("the instances did not run in parallel")
		}
	})
	b := newBatcher(t, r, Config{MaxBatchSize: 4, Batching: true, Instances: n, MaxQueueSize: 10})
	defer mustClose(t, b)
	var replies []<-chan reply
	for i := range int64(n) {
		replies = append(replies, submitAsync(context.Background(), b, ids("x", 1, i, i+100, i+200, i+300)))
	}
	for i, ch := range replies {
		if r := await(t, ch); r.err != nil {
			t.Errorf("request %d: %v", i, r.err)
		}
	}
}

func TestInstancesBoundParallelism(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started, release := make(chan struct{}, 10), make(chan struct{})
		b := newBatcher(t, newRecorder(blocking(started, release, false)), Config{MaxBatchSize: 1, Instances: 2, MaxQueueSize: 10})
		defer mustClose(t, b)
		var replies []<-chan reply
		for i := range int64(4) {
			replies = append(replies, submitAsync(context.Background(), b, ids("x", 1, i)))
		}
		synctest.Wait()
		if got := len(started); got != 2 {
			t.Errorf("%d batches running on 2 instances", got)
		}
		if got := b.QueueDepth(); got != 2 {
			t.Errorf("QueueDepth = %d, want 2", got)
		}
		close(release)
		for i, ch := range replies {
			if r := await(t, ch); r.err != nil {
				t.Errorf("request %d: %v", i, r.err)
			}
		}
	})
}

func TestSubmitValidates(t *testing.T) {
	tests := []struct {
		name      string
		in        []tensor.Tensor
		wantErr   error
		wantInMsg string
	}{
		{"different batch sizes", []tensor.Tensor{ids("a", 1, 1, 2), ids("b", 1, 3)}, tensor.ErrInvalid, `input "b" has batch size 1 but input "a" has 2`},
		{"too many rows", []tensor.Tensor{ids("x", 1, 1, 2, 3, 4, 5)}, ErrTooManyRows, "max batch size 4"},
		{"scalar input", []tensor.Tensor{{Name: "s", DataType: tensor.Int64, Data: make([]byte, 8)}}, tensor.ErrInvalid, `"s"`},
		{"no inputs", nil, tensor.ErrInvalid, "no inputs"},
		{"no rows", []tensor.Tensor{ids("x", 1)}, tensor.ErrInvalid, `input "x" has batch size 0`},
	}
	rec := newRecorder(addOne)
	b := newBatcher(t, rec, Config{MaxBatchSize: 4, Batching: true})
	defer mustClose(t, b)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.Submit(context.Background(), tt.in)
			if !errors.Is(err, tt.wantErr) || !errors.Is(err, tensor.ErrInvalid) {
				t.Fatalf("Submit: %v, want %v (and tensor.ErrInvalid)", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantInMsg)
			}
		})
	}
	if n := len(rec.records()); n != 0 {
		t.Errorf("runner called %d times for invalid requests", n)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative max batch size", Config{MaxBatchSize: -1}, "max batch size -1"},
		{"negative delay", Config{MaxQueueDelay: -time.Second}, "max queue delay"},
		{"negative queue size", Config{MaxQueueSize: -1}, "max queue size"},
		{"negative default timeout", Config{DefaultTimeout: -time.Second}, "default timeout"},
		{"negative instances", Config{Instances: -2}, "instance count"},
		{"preferred size above max", Config{MaxBatchSize: 4, Batching: true, PreferredBatchSizes: []int{8}}, "preferred batch size 8"},
		{"preferred size zero", Config{MaxBatchSize: 4, Batching: true, PreferredBatchSizes: []int{0}}, "preferred batch size 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Model, tt.cfg.Version = "m", "3"
			b, err := New(runnerFunc(addOne), tt.cfg, nil, nil)
			if err == nil {
				mustClose(t, b)
				t.Fatal("New accepted the config")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "m version 3") {
				t.Errorf("error %q does not name %q and the model version", err, tt.want)
			}
		})
	}
	if _, err := New(nil, Config{}, nil, nil); err == nil {
		t.Error("New accepted a nil runner")
	}
}

// TestSubmitTimedReportsQueueAndCompute checks the timing a caller gets:
// the wait for companions, then the batch's run, in fake time.
func TestSubmitTimedReportsQueueAndCompute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay, run = 2 * time.Millisecond, 3 * time.Millisecond
		b := newBatcher(t, runnerFunc(func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			time.Sleep(run)
			return addOne(ctx, in)
		}), Config{MaxBatchSize: 4, Batching: true, MaxQueueDelay: delay})
		defer mustClose(t, b)
		var tm Timing
		if _, err := b.SubmitTimed(context.Background(), []tensor.Tensor{ids("x", 1, 1)}, &tm); err != nil {
			t.Fatal(err)
		}
		if tm.Queue != delay || tm.Compute != run {
			t.Errorf("timing %+v, want queue %v and compute %v", tm, delay, run)
		}
	})
}
