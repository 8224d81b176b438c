package batcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// poisoned is a runner that fails every batch holding a marked row (a row
// id ending in 9) and otherwise adds one.
func poisoned(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	for _, id := range rowIDs(in[0]) {
		if id%10 == 9 {
			return nil, fmt.Errorf("row %d: %w", id, errBoom)
		}
	}
	return addOne(ctx, in)
}

// TestIsolation fills one batch with n requests of one or two rows, some
// of them marked, through a runner that fails any batch holding a marked
// row: every unmarked request gets exactly its own answer, every marked one
// the runner's error, and the runs stay within 2n-1 (exactly one when
// nothing is marked).
func TestIsolation(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		marked   []int // request indexes
		warmedUp bool
		// rejected says whether the marked requests are the client's
		// fault (400) rather than the server's (500).
		rejected bool
	}{
		{name: "clean batch", n: 8},
		{name: "one marked first", n: 8, marked: []int{0}, rejected: true},
		{name: "one marked last", n: 8, marked: []int{7}, rejected: true},
		{name: "two marked", n: 8, marked: []int{2, 5}, rejected: true},
		{name: "odd size", n: 7, marked: []int{3}, rejected: true},
		{name: "half marked", n: 8, marked: []int{0, 1, 4, 6}, rejected: true},
		{name: "all marked, never succeeded", n: 8, marked: []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{name: "all marked after a warmup", n: 8, marked: []int{0, 1, 2, 3, 4, 5, 6, 7}, warmedUp: true, rejected: true},
		{name: "two requests, one marked", n: 2, marked: []int{1}, rejected: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				m, err := NewMetrics(reg, nil)
				if err != nil {
					t.Fatal(err)
				}
				rec := newRecorder(poisoned)
				// The batch is dispatched once it holds every request.
				total := tt.n + tt.n/2
				cfg := Config{MaxBatchSize: total, Batching: true, MaxQueueDelay: time.Hour, WarmedUp: tt.warmedUp, Model: "m", Version: "1"}
				b, err := New(rec, cfg, nil, m)
				if err != nil {
					t.Fatal(err)
				}
				defer mustClose(t, b)
				ctx := context.Background()
				var ins [][]tensor.Tensor
				var replies []<-chan reply
				for i := range tt.n {
					rows := []int64{int64(i*10 + 1)}
					if i%2 == 1 {
						rows = append(rows, int64(i*10+2))
					}
					if slices.Contains(tt.marked, i) {
						rows[len(rows)-1] = int64(i*10 + 9)
					}
					in := []tensor.Tensor{ids("x", 3, rows...), ids32("y", 2, rows...)}
					ins = append(ins, in)
					replies = append(replies, submitAsync(ctx, b, in...))
					synctest.Wait()
				}
				for i, ch := range replies {
					r := await(t, ch)
					if !slices.Contains(tt.marked, i) {
						if r.err != nil {
							t.Errorf("request %d: %v", i, r.err)
							continue
						}
						checkAddOne(t, ins[i], r.out)
						continue
					}
					if !errors.Is(r.err, errBoom) {
						t.Errorf("marked request %d: %v, want the runner's error", i, r.err)
					}
					if got := errors.Is(r.err, tensor.ErrInvalid); got != tt.rejected {
						t.Errorf("marked request %d: the client's fault = %v, want %v (%v)", i, got, tt.rejected, r.err)
					}
					if tt.rejected && !strings.HasPrefix(r.err.Error(), "the model rejected this input: ") {
						t.Errorf("marked request %d: message %q", i, r.err)
					}
				}
				runs := len(rec.records())
				switch {
				case len(tt.marked) == 0 && runs != 1:
					t.Errorf("%d runs of a clean batch, want 1", runs)
				case runs > 2*tt.n-1:
					t.Errorf("%d runs for %d requests, more than 2n-1 = %d", runs, tt.n, 2*tt.n-1)
				}
				// Every unmarked request ran alone or in a group at most
				// once successfully; no row ran in a successful batch twice.
				seen := map[int64]int{}
				for _, br := range rec.records() {
					ok := !slices.ContainsFunc(br.ids, func(id int64) bool { return id%10 == 9 })
					for _, id := range br.ids {
						if ok {
							seen[id]++
						}
					}
				}
				for id, n := range seen {
					if n != 1 {
						t.Errorf("row %d ran %d times in successful batches", id, n)
					}
				}
				isolations, rejections := 0.0, 0.0
				if len(tt.marked) > 0 {
					isolations = 1
				}
				if tt.rejected {
					rejections = float64(len(tt.marked))
				}
				if got := testutil.ToFloat64(m.isolations.WithLabelValues("m", "1")); got != isolations {
					t.Errorf("onnxserve_batch_isolations_total = %v, want %v", got, isolations)
				}
				if got := testutil.ToFloat64(m.rejections.WithLabelValues("m", "1")); got != rejections {
					t.Errorf("onnxserve_model_rejections_total = %v, want %v", got, rejections)
				}
			})
		})
	}
}

// TestIsolationHonoursDeadlines: a request whose deadline passes while its
// batch fails is answered with the deadline error and never runs again.
func TestIsolationHonoursDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder(func(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
			time.Sleep(10 * time.Millisecond) // fake time: the first run outlives the deadline
			return poisoned(ctx, in)
		})
		b := newBatcher(t, rec, Config{MaxBatchSize: 4, Batching: true, MaxQueueDelay: time.Hour})
		defer mustClose(t, b)
		short, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		ctx := context.Background()
		replies := []<-chan reply{
			submitAsync(short, b, ids("x", 1, 1)),
			submitAsync(ctx, b, ids("x", 1, 2)),
			submitAsync(ctx, b, ids("x", 1, 9)),
			submitAsync(ctx, b, ids("x", 1, 3)),
		}
		for i, ch := range replies {
			r := await(t, ch)
			switch i {
			case 0:
				if !errors.Is(r.err, context.DeadlineExceeded) {
					t.Errorf("expired request: %v, want context.DeadlineExceeded", r.err)
				}
			case 2:
				if !errors.Is(r.err, errBoom) {
					t.Errorf("marked request: %v", r.err)
				}
			default:
				if r.err != nil {
					t.Errorf("request %d: %v", i, r.err)
				}
			}
		}
		synctest.Wait()
		for i, br := range rec.records() {
			if i > 0 && slices.Contains(br.ids, 1) {
				t.Errorf("the expired request ran again in run %d: %v", i, br.ids)
			}
		}
	})
}

// TestBrokenModelIsNotTheClientsFault: once every request has failed for
// brokenStreak requests in a row, failures are the server's again, until a
// run succeeds.
func TestBrokenModelIsNotTheClientsFault(t *testing.T) {
	b := newBatcher(t, runnerFunc(poisoned), Config{MaxBatchSize: 4, WarmedUp: true})
	defer mustClose(t, b)
	ctx := context.Background()
	for i := range brokenStreak + 3 {
		_, err := b.Submit(ctx, []tensor.Tensor{ids("x", 1, 9)})
		if want := i < brokenStreak; errors.Is(err, ErrRejected) != want {
			t.Fatalf("failure %d: %v; rejected want %v", i+1, err, want)
		}
	}
	if _, err := b.Submit(ctx, []tensor.Tensor{ids("x", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Submit(ctx, []tensor.Tensor{ids("x", 1, 9)}); !errors.Is(err, ErrRejected) {
		t.Errorf("after a success: %v, want a rejection", err)
	}
}

// TestRejectionLogIsRateLimited: rejections log at warn, a few lines per
// window, and the next line counts those left out.
func TestRejectionLogIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.DebugLevel)
		b, err := New(runnerFunc(poisoned), Config{MaxBatchSize: 4, WarmedUp: true}, zap.New(core), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer mustClose(t, b)
		ctx := context.Background()
		for range rejectLogBurst + 4 {
			if _, err := b.Submit(ctx, []tensor.Tensor{ids("x", 1, 9)}); !errors.Is(err, ErrRejected) {
				t.Fatal(err)
			}
		}
		if n := logs.FilterMessage("the model rejected a request's input").Len(); n != rejectLogBurst {
			t.Errorf("%d rejection lines in one window, want %d", n, rejectLogBurst)
		}
		time.Sleep(rejectLogWindow)
		if _, err := b.Submit(ctx, []tensor.Tensor{ids("x", 1, 9)}); !errors.Is(err, ErrRejected) {
			t.Fatal(err)
		}
		lines := logs.FilterMessage("the model rejected a request's input").All()
		last := lines[len(lines)-1]
		if last.Level != zapcore.WarnLevel || last.Stack != "" || last.ContextMap()["suppressed"] != int64(4) {
			t.Errorf("line after the window: level %v, stack %q, fields %v; want warn, no stack, suppressed 4", last.Level, last.Stack, last.ContextMap())
		}
	})
}
