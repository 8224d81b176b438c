package repository

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseRolloutBlock(t *testing.T) {
	cfg, err := ParseConfig([]byte(`rollout:
  auto: true
  shadow_first: 2m
  steps: [1, 5, 25, 50, 100]
  step_interval: 1m
  min_requests: 200
  gates:
    max_error_rate: 0.01
    max_error_rate_delta: 0.005
    max_p99_ratio: 1.5
    min_shadow_agreement: 0.95
    max_accuracy_drop: 0.02
    max_drift: 0.2
  on_failure: hold
  on_success: promote
`))
	if err != nil {
		t.Fatal(err)
	}
	f := func(v float64) *float64 { return &v }
	want := Rollout{Auto: true, ShadowFirst: 2 * time.Minute, Steps: []int{1, 5, 25, 50, 100}, StepInterval: time.Minute, MinRequests: 200,
		Gates:     Gates{f(0.01), f(0.005), f(1.5), f(0.95), f(0.02), f(0.2)},
		OnFailure: OnFailureHold, OnSuccess: OnSuccessPromote}
	if !reflect.DeepEqual(*cfg.Rollout, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", *cfg.Rollout, want)
	}
	if c := cfg.Clone(); c.Rollout == cfg.Rollout || c.Rollout.Gates.MaxDrift == cfg.Rollout.Gates.MaxDrift || !reflect.DeepEqual(*c.Rollout, want) {
		t.Error("Clone shares the rollout block")
	}

	cfg, err = ParseConfig([]byte("rollout: {auto: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultRollout()
	def.Auto = true
	if !reflect.DeepEqual(*cfg.Rollout, def) || *def.Gates.MaxErrorRate != DefaultMaxErrorRate {
		t.Errorf("defaults: %+v", *cfg.Rollout)
	}
	if cfg, _ := ParseConfig(nil); cfg.Rollout != nil {
		t.Error("an absent block parsed as present")
	}
}

func TestParseRolloutBad(t *testing.T) {
	for _, c := range []struct{ name, yaml, field, msg string }{
		{"steps decreasing", "rollout: {steps: [5, 1, 100]}", "rollout.steps[1]", "steps must increase, got 1 after 5"},
		{"steps not ending at 100", "rollout: {steps: [5, 50]}", "rollout.steps", "must end at 100, ends at 50"},
		{"step out of range", "rollout: {steps: [0, 100]}", "rollout.steps[0]", "1..100, got 0"},
		{"empty steps", "rollout: {steps: []}", "rollout.steps", "at least one"},
		{"interval without unit", "rollout: {step_interval: 60}", "rollout.step_interval", "must be a duration"},
		{"zero interval", "rollout: {step_interval: 0s}", "rollout.step_interval", "got 0s"},
		{"min requests zero", "rollout: {min_requests: 0}", "rollout.min_requests", "must be >= 1"},
		{"on_failure unknown", "rollout: {on_failure: retry}", "rollout.on_failure", `got "retry"`},
		{"on_success unknown", "rollout: {on_success: ship}", "rollout.on_success", `got "ship"`},
		{"rate above 1", "rollout: {gates: {max_error_rate: 1.5}}", "rollout.gates.max_error_rate", "share in 0..1"},
		{"rate as string", `rollout: {gates: {max_error_rate: "1%"}}`, "rollout.gates.max_error_rate", "must be a number"},
		{"ratio zero", "rollout: {gates: {max_p99_ratio: 0}}", "rollout.gates.max_p99_ratio", "must be > 0"},
		{"unknown gate", "rollout: {gates: {max_cost: 1}}", "rollout.gates.max_cost", "unknown field"},
		{"auto not bool", "rollout: {auto: yes please}", "rollout.auto", "true or false"},
		{"shadow too long", "rollout: {shadow_first: 1000h}", "rollout.shadow_first", "must be in 0s..168h"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.yaml))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("%v, want ErrInvalidConfig", err)
			}
			var fe *FieldError
			found := false
			for _, e := range flatten(err) {
				if errors.As(e, &fe) && fe.Field == c.field && strings.Contains(fe.Msg, c.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("%v, want %s: …%s…", err, c.field, c.msg)
			}
		})
	}
}

// flatten lists the errors a joined error holds, or err itself.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestParseRolloutRequest(t *testing.T) {
	base := DefaultRollout()
	base.Auto = true
	req, err := ParseRolloutRequest([]byte(`{"candidate":"3","baseline":2,"steps":[50,100],"gates":{"max_p99_ratio":2}}`), base)
	if err != nil {
		t.Fatal(err)
	}
	if req.Candidate != "3" || req.Baseline != "2" || !reflect.DeepEqual(req.Policy.Steps, []int{50, 100}) ||
		req.Policy.Gates.MaxErrorRate != nil || *req.Policy.Gates.MaxP99Ratio != 2 || req.Policy.StepInterval != DefaultStepInterval {
		t.Errorf("parsed %+v", req)
	}
	if !reflect.DeepEqual(base.Steps, DefaultRolloutSteps) {
		t.Error("the request changed its base policy")
	}
	for _, c := range []struct{ body, want string }{
		{``, "candidate: required"},
		{`{}`, "candidate: required"},
		{`{"candidate":"03"}`, "candidate: must be a version number"},
		{`{"candidate":"3","auto":true}`, "auto: unknown field"},
		{`{"candidate":"3","steps":[100,50]}`, "steps[1]"},
		{`[1]`, "must be a mapping"},
	} {
		if _, err := ParseRolloutRequest([]byte(c.body), base); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig naming %q", c.body, err, c.want)
		}
	}
}
