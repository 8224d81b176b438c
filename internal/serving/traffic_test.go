package serving

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/repository"
)

func withSplit(cfg repository.Config, split map[string]int, shadow *repository.Shadow) repository.Config {
	cfg.Traffic = &repository.Traffic{Split: split, StickyKey: repository.DefaultStickyKey, Shadow: shadow}
	return cfg
}

// mapMetadata is request metadata from a map.
type mapMetadata map[string]string

func (m mapMetadata) Get(key string) string { return m[key] }

func countVersions(t *testing.T, s *Server, n int, key func(i int) string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range n {
		req := request("", 1, 0)
		req.RoutingKey = key(i)
		resp, err := s.Infer(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		got[resp.Version]++
	}
	return got
}

func TestWeightedSplit(t *testing.T) {
	l := newFakeLoader()
	s := newTestServer(t, l, Config{})
	cfg := withSplit(batchingConfig(), map[string]int{"1": 90, "2": 10}, nil)
	s.Apply(context.Background(), []Desired{desired("m", cfg, dv(1, "a", "x"), dv(2, "b", "x"))})

	got := countVersions(t, s, 2000, func(int) string { return "" })
	// 2000 draws at p=0.1: mean 200, sd ~13.4; 5 sd either side.
	if got["2"] < 133 || got["2"] > 267 || got["1"]+got["2"] != 2000 {
		t.Errorf("90/10 split served %v", got)
	}

	sticky := countVersions(t, s, 50, func(int) string { return "user-42" })
	if len(sticky) != 1 {
		t.Errorf("one key went to several versions: %v", sticky)
	}
}

func TestUnreadyArmRedistributed(t *testing.T) {
	l := newFakeLoader()
	l.set("broken", 0, errors.New("corrupt"))
	s := newTestServer(t, l, Config{})
	cfg := withSplit(batchingConfig(), map[string]int{"1": 90, "2": 10}, nil)
	s.Apply(context.Background(), []Desired{desired("m", cfg, dv(1, "broken", "x"), dv(2, "b", "x"))})
	got := countVersions(t, s, 200, func(i int) string { return fmt.Sprint(i % 3) })
	if got["2"] != 200 {
		t.Errorf("with v1 unready, v2 should take everything: %v", got)
	}
	view, err := s.Traffic("m")
	if err != nil {
		t.Fatal(err)
	}
	if len(view.Arms) != 2 || view.Arms[0].Ready || view.Arms[0].Weight != 90 || !view.Arms[1].Ready || view.Arms[1].Percent != 100 {
		t.Errorf("effective traffic %+v", view.Arms)
	}
}

func TestSetTrafficValidatesAndPersists(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "m", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "m", "config.yaml"), []byte("max_batch_size: 8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newFakeLoader()
	s := newTestServer(t, l, Config{Root: root})
	s.Apply(context.Background(), []Desired{desired("m", batchingConfig(), dv(1, "a", "x"), dv(2, "b", "x"))})

	bad := []struct {
		name string
		t    repository.Traffic
		want error
	}{
		{"unknown version", repository.Traffic{Split: map[string]int{"1": 50, "7": 50}, StickyKey: "k"}, ErrInvalidConfig},
		{"negative", repository.Traffic{Split: map[string]int{"1": -1, "2": 5}, StickyKey: "k"}, ErrInvalidConfig},
		{"all zero", repository.Traffic{Split: map[string]int{"1": 0, "2": 0}, StickyKey: "k"}, ErrInvalidConfig},
		{"unknown shadow", repository.Traffic{Split: map[string]int{"1": 1}, StickyKey: "k", Shadow: &repository.Shadow{Version: 9, Percent: 5}}, ErrInvalidConfig},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.SetTraffic("m", tc.t); !errors.Is(err, tc.want) {
				t.Errorf("SetTraffic = %v, want %v", err, tc.want)
			}
		})
	}
	if err := s.SetTraffic("nope", repository.Traffic{Split: map[string]int{"1": 1}, StickyKey: "k"}); !errors.Is(err, ErrModelNotFound) {
		t.Errorf("unknown model: %v", err)
	}

	if err := s.SetTraffic("m", repository.Traffic{Split: map[string]int{"1": 0, "2": 100}, StickyKey: "user"}); err != nil {
		t.Fatal(err)
	}
	if got := countVersions(t, s, 50, func(i int) string { return fmt.Sprint(i) }); got["2"] != 50 {
		t.Errorf("after PUT 0/100: %v", got)
	}
	if view, err := s.Traffic("m"); err != nil || view.Traffic.StickyKey != "user" {
		t.Errorf("sticky key %q (%v)", view.Traffic.StickyKey, err)
	}
	cfg, err := repository.LoadConfig(filepath.Join(root, "m", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxBatchSize != 8 || cfg.Traffic == nil || cfg.Traffic.Split["2"] != 100 || cfg.Traffic.StickyKey != "user" {
		t.Errorf("persisted config %+v / %+v", cfg, cfg.Traffic)
	}
	// The sticky key's metadata value wins over the routing_key parameter:
	// requests whose parameters differ but whose metadata agrees land on
	// one arm.
	if err := s.SetTraffic("m", repository.Traffic{Split: map[string]int{"1": 50, "2": 50}, StickyKey: "user"}); err != nil {
		t.Fatal(err)
	}
	arms := map[string]bool{}
	for i := range 40 {
		req := request("", 1, 0)
		req.RoutingKey = fmt.Sprint(i)
		req.Metadata = mapMetadata{"user": "alice"}
		resp, err := s.Infer(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		arms[resp.Version] = true
	}
	if len(arms) != 1 {
		t.Errorf("one sticky metadata value reached versions %v, want one", arms)
	}
}

func TestServingHashIgnoresTraffic(t *testing.T) {
	a := batchingConfig()
	b := withSplit(batchingConfig(), map[string]int{"1": 1}, nil)
	if servingHash(a) != servingHash(b) {
		t.Error("a traffic block changes the serving hash, so a split change would reload sessions")
	}
	c := batchingConfig()
	c.MaxBatchSize = 4
	if servingHash(a) == servingHash(c) {
		t.Error("max_batch_size does not change the serving hash")
	}
}

// TestShadowNeverDelaysPrimary mirrors every request to a version that
// never answers: the primary answers all the same, and the copies that do
// not fit the bounded shadow queue are dropped and counted.
func TestShadowNeverDelaysPrimary(t *testing.T) {
	l := newFakeLoader()
	block := make(chan struct{})
	l.block["stuck"] = block
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := New(l, Config{}, zap.NewNop(), m, nil)
	defer func() {
		close(block)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	cfg := withSplit(batchingConfig(), map[string]int{"1": 1}, &repository.Shadow{Version: 2, Percent: 100})
	s.Apply(context.Background(), []Desired{desired("m", cfg, dv(1, "a", "x"), dv(2, "stuck", "x"))})

	const n = shadowQueueSize + 300
	for i := range n {
		resp, err := s.Infer(context.Background(), request("", 1, float32(i)))
		if err != nil || resp.Version != "1" {
			t.Fatalf("request %d: %+v %v", i, resp, err)
		}
	}
	mirrored := testutil.ToFloat64(m.routed.WithLabelValues("m", "2", "shadow"))
	dropped := testutil.ToFloat64(m.shadow.WithLabelValues("m", "2", "dropped"))
	if mirrored != n || dropped < 250 {
		t.Errorf("mirrored %v (want %d), dropped %v (want the overflow)", mirrored, n, dropped)
	}
	if p := testutil.ToFloat64(m.routed.WithLabelValues("m", "1", "primary")); p != n {
		t.Errorf("primary decisions %v, want %d", p, n)
	}
}

func TestShadowAgreement(t *testing.T) {
	l := newFakeLoader()
	l.runErr["failing"] = errors.New("kernel failed")
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := New(l, Config{}, zap.NewNop(), m, nil)
	cfg := withSplit(batchingConfig(), map[string]int{"1": 1}, &repository.Shadow{Version: 2, Percent: 100})
	s.Apply(context.Background(), []Desired{desired("m", cfg, dv(1, "a", "x"), dv(2, "a", "x"), dv(3, "failing", "x"))})
	for i := range 20 {
		if _, err := s.Infer(context.Background(), request("", 2, float32(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Now mirror to a version whose runs fail: the primary still answers.
	cfg = withSplit(batchingConfig(), map[string]int{"1": 1}, &repository.Shadow{Version: 3, Percent: 100})
	s.Apply(context.Background(), []Desired{desired("m", cfg, dv(1, "a", "x"), dv(2, "a", "x"), dv(3, "failing", "x"))})
	for i := range 10 {
		if _, err := s.Infer(context.Background(), request("", 1, float32(i))); err != nil {
			t.Fatalf("primary failed while its shadow fails: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if a := testutil.ToFloat64(m.shadow.WithLabelValues("m", "2", "agree")); a+testutil.ToFloat64(m.shadow.WithLabelValues("m", "2", "dropped")) != 20 || a == 0 {
		t.Errorf("agreements %v of 20", a)
	}
	if e := testutil.ToFloat64(m.shadow.WithLabelValues("m", "3", "error")); e+testutil.ToFloat64(m.shadow.WithLabelValues("m", "3", "dropped")) != 10 || e == 0 {
		t.Errorf("shadow errors %v of 10", e)
	}
}
