package serving

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// speedModel is a fake Model that copies INPUT (FP32 [-1,4], or shape)
// to OUTPUT after sleeping cost(rows): a model whose speed per batch size
// the test decides.
type speedModel struct {
	shape  []int64
	cost   func(rows int64) time.Duration
	maxRow atomic.Int64 // most rows seen in one run
}

func (m *speedModel) Inputs() []tensor.Spec {
	return []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: m.shape}}
}

func (m *speedModel) Outputs() []tensor.Spec {
	return []tensor.Spec{{Name: "OUTPUT", DataType: tensor.FP32, Shape: m.shape}}
}

func (m *speedModel) Run(_ context.Context, in []tensor.Tensor) ([]tensor.Tensor, error) {
	rows := in[0].Shape[0]
	for {
		cur := m.maxRow.Load()
		if rows <= cur || m.maxRow.CompareAndSwap(cur, rows) {
			break
		}
	}
	if m.cost != nil {
		time.Sleep(m.cost(rows))
	}
	out := in[0]
	out.Name, out.Data = "OUTPUT", append([]byte(nil), in[0].Data...)
	return []tensor.Tensor{out}, nil
}

func (m *speedModel) Close() error { return nil }

// speedLoader hands out one speedModel for every path.
type speedLoader struct{ m *speedModel }

func (l speedLoader) Load(context.Context, string, repository.Instances) (Model, error) {
	return l.m, nil
}

// fastAt costs 1ms per row, except at size fast, where the whole batch
// takes 1ms: that size has by far the most items per second.
func fastAt(fast int64) func(int64) time.Duration {
	return func(rows int64) time.Duration {
		if rows == fast {
			return time.Millisecond
		}
		return time.Duration(rows) * time.Millisecond
	}
}

func TestMeasureBatchSizes(t *testing.T) {
	tests := []struct {
		name      string
		cost      func(int64) time.Duration
		limit     int
		budget    time.Duration
		wantSizes []int
		wantBest  int
		wantRuns  []bool // whether each size was measured
	}{
		{
			name: "fastest size wins", cost: fastAt(4), limit: 16, budget: time.Second,
			wantSizes: []int{1, 2, 4, 8, 16}, wantBest: 4,
		},
		{
			name: "the limit is measured when not a power of two", cost: fastAt(6), limit: 6, budget: time.Second,
			wantSizes: []int{1, 2, 4, 6}, wantBest: 6,
		},
		{
			name:  "a tie goes to the smaller size",
			cost:  func(rows int64) time.Duration { return time.Duration(rows) * time.Millisecond },
			limit: 8, budget: time.Second,
			wantSizes: []int{1, 2, 4, 8}, wantBest: 1,
		},
		{
			name:  "bigger batches faster per item: the limit",
			cost:  func(rows int64) time.Duration { return time.Millisecond + time.Duration(rows)*100*time.Microsecond },
			limit: 8, budget: time.Second,
			wantSizes: []int{1, 2, 4, 8}, wantBest: 8,
		},
		{
			name:  "sizes beyond the budget are not measured",
			cost:  func(int64) time.Duration { return 100 * time.Millisecond },
			limit: 8, budget: 250 * time.Millisecond,
			wantSizes: []int{1, 2, 4, 8}, wantBest: 2, wantRuns: []bool{true, true, false, false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := &speedModel{shape: []int64{-1, 4}, cost: tt.cost}
				got, err := MeasureBatchSizes(context.Background(), m, m.Inputs(), nil, nil, tt.limit, tt.budget)
				if err != nil {
					t.Fatal(err)
				}
				var sizes []int
				for i, ts := range got.Timings {
					sizes = append(sizes, ts.Size)
					if measured := ts.Runs > 0; tt.wantRuns != nil && measured != tt.wantRuns[i] {
						t.Errorf("size %d measured = %v, want %v", ts.Size, measured, tt.wantRuns[i])
					}
				}
				if !equalInts(sizes, tt.wantSizes) {
					t.Errorf("sizes %v, want %v", sizes, tt.wantSizes)
				}
				if got.Best != tt.wantBest {
					t.Errorf("best %d, want %d (%s)", got.Best, tt.wantBest, got)
				}
				if tt.wantRuns == nil && got.Took > tt.budget+tt.cost(int64(tt.limit))*2 {
					t.Errorf("took %v with a budget of %v", got.Took, tt.budget)
				}
			})
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAutoBatchSizePicksFastest loads a version whose fake runner is by far
// fastest per item at batch size 4: preferred_batch_sizes auto caps its
// batches at 4 and reports the measurement in the index and statistics.
func TestAutoBatchSizePicksFastest(t *testing.T) {
	cfg, err := repository.ParseConfig([]byte("max_batch_size: 16\ndynamic_batching: {preferred_batch_sizes: auto, tuning_time: 300ms}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := &speedModel{shape: []int64{-1, 4}, cost: fastAt(4)}
	s := newTestServer(t, speedLoader{m}, Config{})
	s.Apply(context.Background(), []Desired{desired("m", cfg, dv(1, "v1", "a"))})
	idx := s.Index()
	if len(idx) != 1 || idx[0].State != StateReady {
		t.Fatalf("index %+v", idx)
	}
	if !strings.HasPrefix(idx[0].Batching, "batch size 4 chosen by measurement") {
		t.Errorf("index batching %q, want batch size 4 chosen", idx[0].Batching)
	}
	st, err := s.Statistics("m", "")
	if err != nil || len(st) != 1 || st[0].BatchSizes == nil || st[0].BatchSizes.Best != 4 {
		t.Fatalf("statistics %+v, %v", st, err)
	}

	// Sixteen one-row requests at once: no batch holds more than 4 rows.
	m.maxRow.Store(0)
	m.cost = nil
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			_, err := s.Infer(context.Background(), request("", 1, float32(i)))
			errs <- err
		}()
	}
	for range 16 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(testTimeout):
			t.Fatal("no answer")
		}
	}
	if got := m.maxRow.Load(); got > 4 {
		t.Errorf("a batch of %d rows ran; the cap is 4", got)
	}
	// One request of more rows than the cap still runs.
	if _, err := s.Infer(context.Background(), request("", 9, 0)); err != nil {
		t.Errorf("9 rows with a cap of 4 and max_batch_size 16: %v", err)
	}
}

// TestNoConfigFile serves models without config.yaml: one with a dynamic
// first dimension everywhere is batched with a measured cap, one with a
// fixed first dimension runs unbatched as before.
func TestNoConfigFile(t *testing.T) {
	tests := []struct {
		name         string
		shape        []int64
		wantBatching bool
	}{
		{"dynamic first dimension", []int64{-1, 4}, true},
		{"fixed first dimension", []int64{1, 4}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &speedModel{shape: tt.shape}
			s := newTestServer(t, speedLoader{m}, Config{})
			s.Apply(context.Background(), []Desired{desired("m", repository.NoFileConfig(), dv(1, "v1", "a"))})
			idx := s.Index()
			if len(idx) != 1 || idx[0].State != StateReady {
				t.Fatalf("index %+v", idx)
			}
			if got := idx[0].Batching != ""; got != tt.wantBatching {
				t.Errorf("batching %q, want measured = %v", idx[0].Batching, tt.wantBatching)
			}
			if _, err := s.Infer(context.Background(), request("", 1, 0)); err != nil {
				t.Fatal(err)
			}
			_, err := s.Infer(context.Background(), request("", 2, 0))
			if tt.wantBatching && err != nil {
				t.Errorf("2 rows on a batching model: %v", err)
			}
			if !tt.wantBatching && err == nil {
				t.Errorf("2 rows accepted by a model whose first dimension is fixed at 1")
			}
		})
	}
}

// TestWarmupDims loads versions whose warmup.dims name an input the model
// lacks, or give it the wrong rank: each is UNAVAILABLE with the reason.
func TestWarmupDims(t *testing.T) {
	tests := []struct {
		name, yaml, reason string
	}{
		{"unknown input", "max_batch_size: 4\nwarmup: {batch_sizes: [1], dims: {nope: [4]}}\n", `warmup.dims names an input the model does not have: "nope"`},
		{"wrong rank", "max_batch_size: 4\nwarmup: {batch_sizes: [1], dims: {INPUT: [4, 4]}}\n", `warmup.dims of "INPUT": 2 dimensions, the input has 1 besides the batch dimension`},
		{"fixed dimension differs", "max_batch_size: 4\nwarmup: {batch_sizes: [1], dims: {INPUT: [5]}}\n", `dimension 0 is 5, the model fixes it at 4`},
		{"good", "max_batch_size: 4\nwarmup: {batch_sizes: [1, 4], dims: {INPUT: [4]}}\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := repository.ParseConfig([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			s := newTestServer(t, speedLoader{&speedModel{shape: []int64{-1, 4}}}, Config{})
			s.Apply(context.Background(), []Desired{desired("m", cfg, dv(1, "v1", "a"))})
			idx := s.Index()
			if len(idx) != 1 {
				t.Fatalf("index %+v", idx)
			}
			if tt.reason == "" {
				if idx[0].State != StateReady {
					t.Errorf("index %+v, want READY", idx[0])
				}
				return
			}
			if idx[0].State != StateUnavailable || !strings.Contains(idx[0].Reason, tt.reason) {
				t.Errorf("index %+v, want UNAVAILABLE with %q", idx[0], tt.reason)
			}
		})
	}
}
