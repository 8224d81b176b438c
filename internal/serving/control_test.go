package serving

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/router"
)

// TestClaimTraffic: while an owner holds a model's traffic, SetTraffic and
// PutTraffic fail with ErrConflict naming it, and the owner's SetRouting
// works and persists.
func TestClaimTraffic(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "m"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := newFakeLoader()
	s := newTestServer(t, l, Config{Root: root})
	s.Apply(context.Background(), []Desired{desired("m", batchingConfig(), dv(1, "a", "x"), dv(2, "b", "x"))})

	const owner = "rollout of version 2 (baseline 1)"
	if err := s.ClaimTraffic("m", owner); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimTraffic("m", "someone else"); !errors.Is(err, ErrConflict) {
		t.Errorf("second claim: %v, want ErrConflict", err)
	}
	err := s.PutTraffic("m", []byte(`{"split":{"1":1}}`))
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), owner) {
		t.Errorf("PutTraffic while held: %v, want ErrConflict naming the owner", err)
	}
	if err := s.SetRouting(owner, "m", map[string]int{"1": 75, "2": 25}, &router.Shadow{Version: 2, Percent: 10}); err != nil {
		t.Fatal(err)
	}
	view, err := s.Traffic("m")
	if err != nil || !maps.Equal(view.Traffic.Split, map[string]int{"1": 75, "2": 25}) || view.Shadow == nil || view.Shadow.Percent != 10 {
		t.Fatalf("after SetRouting: %+v %v", view, err)
	}
	cfg, err := repository.LoadConfig(filepath.Join(root, "m", repository.ConfigFileName))
	if err != nil || !maps.Equal(cfg.Traffic.Split, view.Traffic.Split) {
		t.Errorf("persisted %+v %v", cfg.Traffic, err)
	}
	s.ReleaseTraffic("m", "someone else")
	if err := s.SetTraffic("m", repository.Traffic{Split: map[string]int{"1": 1}, StickyKey: "k"}); !errors.Is(err, ErrConflict) {
		t.Errorf("another owner released the claim: %v", err)
	}
	s.ReleaseTraffic("m", owner)
	if err := s.SetTraffic("m", repository.Traffic{Split: map[string]int{"1": 1}, StickyKey: "k"}); err != nil {
		t.Errorf("after the release: %v", err)
	}
	if err := s.ClaimTraffic("nope", owner); !errors.Is(err, ErrModelNotFound) {
		t.Errorf("claim of an unknown model: %v", err)
	}
}

// TestAutoRolloutPinsTraffic: on a model with rollout.auto and no split, a
// new newest version does not take traffic: the split is pinned to the
// previous newest and OnNewVersion is told.
func TestAutoRolloutPinsTraffic(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "m"), 0o755); err != nil {
		t.Fatal(err)
	}
	type call struct{ model, candidate, baseline string }
	var calls []call
	l := newFakeLoader()
	s := newTestServer(t, l, Config{Root: root, OnNewVersion: func(m, c, b string, p repository.Rollout) {
		calls = append(calls, call{m, c, b})
	}})
	cfg := batchingConfig()
	r := repository.DefaultRollout()
	r.Auto = true
	cfg.Rollout = &r
	cfg.VersionPolicy = repository.VersionPolicy{All: true}
	s.Apply(context.Background(), []Desired{desired("m", cfg, dv(1, "a", "x"))})
	s.Apply(context.Background(), []Desired{desired("m", cfg, dv(1, "a", "x"), dv(2, "b", "x"))})
	if len(calls) != 1 || calls[0] != (call{"m", "2", "1"}) {
		t.Fatalf("OnNewVersion calls %v, want one for candidate 2 against 1", calls)
	}
	got := countVersions(t, s, 20, func(int) string { return "" })
	if got["1"] != 20 {
		t.Errorf("the new version took traffic before its rollout: %v", got)
	}
	// Without auto the newest takes all, as always.
	r.Auto = false
	s.Apply(context.Background(), []Desired{desired("n", cfg, dv(1, "a", "x"))})
	s.Apply(context.Background(), []Desired{desired("n", cfg, dv(1, "a", "x"), dv(2, "b", "x"))})
	if len(calls) != 1 {
		t.Errorf("OnNewVersion called without auto: %v", calls)
	}
}
