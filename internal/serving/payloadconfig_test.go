package serving

import (
	"context"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/repository"
)

// TestOnConfigFollowsApply: the config hook sees each accepted config and a
// nil once the model is removed; a broken config is never handed on.
func TestOnConfigFollowsApply(t *testing.T) {
	l := newFakeLoader()
	l.set("v1", 1, nil)
	var got []*repository.Config
	s := newTestServer(t, l, Config{OnConfig: func(model string, cfg *repository.Config) {
		if model != "m" {
			t.Errorf("OnConfig for model %q", model)
		}
		got = append(got, cfg)
	}})
	ctx := context.Background()
	cfg := batchingConfig()
	cfg.PayloadLog = &repository.PayloadLog{Sample: 0.5, Mode: repository.PayloadLogAll}
	s.Apply(ctx, []Desired{desired("m", cfg, dv(1, "v1", "a"))})
	broken := desired("m", cfg, dv(1, "v1", "a"))
	broken.ConfigErr = repository.ErrInvalidConfig
	s.Apply(ctx, []Desired{broken})
	s.Apply(ctx, nil)
	if len(got) != 2 || got[0] == nil || got[0].PayloadLog.Sample != 0.5 || got[1] != nil {
		t.Fatalf("OnConfig calls %v, want the accepted config then nil", got)
	}
}

// TestRedactNamesAnInput: payload_log.redact naming no input of the model
// fails the load with the field named; a known input loads.
func TestRedactNamesAnInput(t *testing.T) {
	l := newFakeLoader()
	l.set("v1", 1, nil)
	s := newTestServer(t, l, Config{})
	ctx := context.Background()
	cfg := batchingConfig()
	cfg.PayloadLog = &repository.PayloadLog{Mode: repository.PayloadLogAll, Redact: []string{"SSN"}}
	s.Apply(ctx, []Desired{desired("m", cfg, dv(1, "v1", "a"))})
	idx := s.Index()
	if len(idx) != 1 || idx[0].State != StateUnavailable || !strings.Contains(idx[0].Reason, `payload_log.redact[0]: "SSN" is not an input of the model`) {
		t.Fatalf("index %+v, want UNAVAILABLE naming payload_log.redact[0]", idx)
	}
	in := (&addModel{}).Inputs()[0].Name
	cfg.PayloadLog.Redact = []string{in}
	s.Apply(ctx, []Desired{desired("m", cfg, dv(1, "v1", "b"))})
	if idx := s.Index(); len(idx) != 1 || idx[0].State != StateReady {
		t.Fatalf("index %+v, want READY with redact [%s]", idx, in)
	}
}

// TestPayloadLogSampleChangeDoesNotReload: a new sample or mode reaches
// the hook without reloading a session; a new redact list reloads, since
// it is checked against the model's inputs at load.
func TestPayloadLogSampleChangeDoesNotReload(t *testing.T) {
	l := newFakeLoader()
	l.set("v1", 1, nil)
	var last *repository.Config
	s := newTestServer(t, l, Config{OnConfig: func(_ string, cfg *repository.Config) { last = cfg }})
	ctx := context.Background()
	apply := func(pl repository.PayloadLog) {
		cfg := batchingConfig()
		cfg.PayloadLog = &pl
		d := DesiredFromRepository(repository.Model{Name: "m", Config: cfg,
			Versions: []repository.Version{{Number: 1, Path: "v1"}}, Selected: []int64{1}})
		s.Apply(ctx, []Desired{d})
	}
	apply(repository.PayloadLog{Sample: 0.1, Mode: repository.PayloadLogAll})
	loads := l.loads.Load()
	apply(repository.PayloadLog{Sample: 1, Mode: repository.PayloadLogRequest})
	if n := l.loads.Load() - loads; n != 0 || last == nil || last.PayloadLog.Sample != 1 {
		t.Fatalf("a sample change: %d loads, hook saw %+v; want 0 loads and sample 1", n, last)
	}
	apply(repository.PayloadLog{Sample: 1, Mode: repository.PayloadLogRequest, Redact: []string{"INPUT"}})
	if n := l.loads.Load() - loads; n != 1 {
		t.Fatalf("a redact change: %d loads, want 1", n)
	}
}
