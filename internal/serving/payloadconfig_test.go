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
