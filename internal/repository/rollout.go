package repository

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults and limits of the rollout block.
const (
	// DefaultStepInterval is the least time a rollout stays at one step.
	DefaultStepInterval = time.Minute
	// DefaultMinRequests is the least number of candidate requests in a
	// step's window before the step is judged.
	DefaultMinRequests = 200
	// DefaultMaxErrorRate is the max_error_rate gate of a block that sets
	// no gate at all: a rollout is never judged on nothing.
	DefaultMaxErrorRate = 0.01
	// MaxRolloutSteps bounds the steps list.
	MaxRolloutSteps = 100
	// MaxStepInterval and MaxShadowFirst bound the two durations: a
	// longer one is a typo, not a policy.
	MaxStepInterval = 7 * 24 * time.Hour
	MaxShadowFirst  = 7 * 24 * time.Hour
)

// What a rollout does when it fails or passes its last step.
const (
	OnFailureRollback = "rollback"
	OnFailureHold     = "hold"
	OnSuccessPromote  = "promote"
	OnSuccessHold     = "hold"
)

// DefaultRolloutSteps are the candidate's percentages when steps is absent.
var DefaultRolloutSteps = []int{1, 5, 25, 50, 100}

// Rollout is the rollout block: how a new version is ramped up, judged
// and promoted or rolled back. Every field has a default (DefaultRollout),
// so a rollout can start on a model whose config.yaml has no block. A
// plain value, safe for concurrent reads; Clone before changing a shared
// one.
type Rollout struct {
	// Auto makes a new version folder start a rollout instead of taking
	// all traffic at once. [false]
	Auto bool `yaml:"auto" json:"auto"`
	// ShadowFirst, when > 0, mirrors traffic to the candidate for that
	// long before it serves any. [0], at most MaxShadowFirst.
	ShadowFirst time.Duration `yaml:"shadow_first,omitempty" json:"shadow_first,omitempty"`
	// Steps are the candidate's percentages, strictly increasing, each in
	// 1..100, ending at 100. [DefaultRolloutSteps]
	Steps []int `yaml:"steps" json:"steps"`
	// StepInterval is the least time at each step. [DefaultStepInterval]
	StepInterval time.Duration `yaml:"step_interval" json:"step_interval"`
	// MinRequests is the least number of candidate requests in a step
	// before it is judged. [DefaultMinRequests], >= 1.
	MinRequests int `yaml:"min_requests" json:"min_requests"`
	// Gates are the thresholds a step is judged against.
	Gates Gates `yaml:"gates" json:"gates"`
	// OnFailure is OnFailureRollback (the default) or OnFailureHold.
	OnFailure string `yaml:"on_failure" json:"on_failure"`
	// OnSuccess is OnSuccessPromote (the default) or OnSuccessHold.
	OnSuccess string `yaml:"on_success" json:"on_success"`
}

// Gates are a rollout's thresholds; a nil field is a gate not applied.
// When the rollout block sets no gate, MaxErrorRate is DefaultMaxErrorRate.
type Gates struct {
	// MaxErrorRate bounds the candidate's 5xx answers plus model
	// rejections as a share of its requests, 0..1.
	MaxErrorRate *float64 `yaml:"max_error_rate,omitempty" json:"max_error_rate,omitempty"`
	// MaxErrorRateDelta bounds the candidate's error rate minus the
	// baseline's over the same window, 0..1.
	MaxErrorRateDelta *float64 `yaml:"max_error_rate_delta,omitempty" json:"max_error_rate_delta,omitempty"`
	// MaxP99Ratio bounds the candidate's server-side p99 latency divided
	// by the baseline's, > 0.
	MaxP99Ratio *float64 `yaml:"max_p99_ratio,omitempty" json:"max_p99_ratio,omitempty"`
	// MinShadowAgreement is the least share of mirrored requests whose
	// answer agrees with the primary's, 0..1 (judged in the shadow phase).
	MinShadowAgreement *float64 `yaml:"min_shadow_agreement,omitempty" json:"min_shadow_agreement,omitempty"`
	// MaxAccuracyDrop bounds the baseline's accuracy minus the
	// candidate's, 0..1; it needs the quality signal (feedback).
	MaxAccuracyDrop *float64 `yaml:"max_accuracy_drop,omitempty" json:"max_accuracy_drop,omitempty"`
	// MaxDrift bounds the candidate's output drift, >= 0; it needs a
	// drift profile.
	MaxDrift *float64 `yaml:"max_drift,omitempty" json:"max_drift,omitempty"`
}

// DefaultRollout returns the rollout policy of a model whose config.yaml
// has no rollout block.
func DefaultRollout() Rollout {
	rate := DefaultMaxErrorRate
	return Rollout{
		Steps:        slices.Clone(DefaultRolloutSteps),
		StepInterval: DefaultStepInterval,
		MinRequests:  DefaultMinRequests,
		Gates:        Gates{MaxErrorRate: &rate},
		OnFailure:    OnFailureRollback,
		OnSuccess:    OnSuccessPromote,
	}
}

// Clone returns a deep copy of r.
func (r Rollout) Clone() Rollout {
	out := r
	out.Steps = slices.Clone(r.Steps)
	cp := func(p *float64) *float64 {
		if p == nil {
			return nil
		}
		v := *p
		return &v
	}
	g := r.Gates
	out.Gates = Gates{cp(g.MaxErrorRate), cp(g.MaxErrorRateDelta), cp(g.MaxP99Ratio),
		cp(g.MinShadowAgreement), cp(g.MaxAccuracyDrop), cp(g.MaxDrift)}
	return out
}

// RolloutRequest is the body of POST /v2/models/{m}/rollout: the candidate
// version, optionally the baseline, and overrides of the model's policy.
type RolloutRequest struct {
	// Candidate is the version to ramp up (canonical decimal).
	Candidate string
	// Baseline is the version it is judged against; "" lets the server
	// choose (the version serving unversioned requests now).
	Baseline string
	// Policy is the model's policy with the request's overrides applied.
	Policy Rollout
}

// ParseRolloutRequest parses a rollout start request (JSON, or YAML) on
// top of base, the model's policy: "candidate" (required), "baseline", and
// any field of the rollout block but auto, each replacing base's. It is as
// strict as ParseConfig; field paths are relative to the request. A request
// that sets any gate replaces base's gates as a whole.
func ParseRolloutRequest(data []byte, base Rollout) (RolloutRequest, error) {
	req := RolloutRequest{Policy: base.Clone()}
	doc, err := decodeDocument(data)
	if err != nil {
		return RolloutRequest{}, err
	}
	p := parser{ch: checker{lines: map[string]int{}}}
	if doc == nil {
		p.ch.errs = append(p.ch.errs, &FieldError{Field: "candidate", Msg: "required"})
	} else {
		f := p.rolloutFields(&req.Policy)
		delete(f, "auto")
		f["candidate"] = func(v *yaml.Node, path string) { p.versionString(v, path, &req.Candidate) }
		f["baseline"] = func(v *yaml.Node, path string) { p.versionString(v, path, &req.Baseline) }
		seen := p.mapping(doc, "", f)
		if seen != nil && req.Candidate == "" && !slices.ContainsFunc(p.ch.errs, func(e *FieldError) bool { return e.Field == "candidate" }) {
			p.ch.errs = append(p.ch.errs, &FieldError{Field: "candidate", Line: doc.Line, Msg: "required"})
		}
	}
	if err := p.ch.err(); err != nil {
		return RolloutRequest{}, err
	}
	ch := checker{lines: p.ch.lines}
	req.Policy.validate(&ch, "")
	if err := ch.err(); err != nil {
		return RolloutRequest{}, err
	}
	return req, nil
}

// versionString reads a version number given as a string or an integer.
func (p *parser) versionString(n *yaml.Node, path string, dst *string) {
	n = resolveAlias(n)
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!str" || n.ShortTag() == "!!int") {
		if _, ok := ParseVersion(n.Value); ok {
			*dst = n.Value
			return
		}
	}
	p.typeErr(n, path, "a version number")
}

// optFloatField reads a number into a gate that is nil when absent.
func (p *parser) optFloatField(n *yaml.Node, path string, dst **float64) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
		p.typeErr(n, path, "a number")
		return
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		p.typeErr(n, path, "a finite number")
		return
	}
	*dst = &v
}

// rollout decodes a rollout block of config.yaml.
func (p *parser) rollout(n *yaml.Node, path string, r *Rollout) {
	p.mapping(n, path, p.rolloutFields(r))
}

func (p *parser) rolloutFields(r *Rollout) fields {
	return fields{
		"auto":          func(v *yaml.Node, path string) { p.boolField(v, path, &r.Auto) },
		"shadow_first":  func(v *yaml.Node, path string) { p.durationField(v, path, &r.ShadowFirst) },
		"steps":         func(v *yaml.Node, path string) { p.intList(v, path, &r.Steps) },
		"step_interval": func(v *yaml.Node, path string) { p.durationField(v, path, &r.StepInterval) },
		"min_requests":  func(v *yaml.Node, path string) { p.intField(v, path, &r.MinRequests) },
		"on_failure":    func(v *yaml.Node, path string) { p.stringField(v, path, &r.OnFailure) },
		"on_success":    func(v *yaml.Node, path string) { p.stringField(v, path, &r.OnSuccess) },
		"gates": func(v *yaml.Node, path string) {
			g := &r.Gates
			*g = Gates{}
			p.mapping(v, path, fields{
				"max_error_rate":       func(v *yaml.Node, path string) { p.optFloatField(v, path, &g.MaxErrorRate) },
				"max_error_rate_delta": func(v *yaml.Node, path string) { p.optFloatField(v, path, &g.MaxErrorRateDelta) },
				"max_p99_ratio":        func(v *yaml.Node, path string) { p.optFloatField(v, path, &g.MaxP99Ratio) },
				"min_shadow_agreement": func(v *yaml.Node, path string) { p.optFloatField(v, path, &g.MinShadowAgreement) },
				"max_accuracy_drop":    func(v *yaml.Node, path string) { p.optFloatField(v, path, &g.MaxAccuracyDrop) },
				"max_drift":            func(v *yaml.Node, path string) { p.optFloatField(v, path, &g.MaxDrift) },
			})
		},
	}
}

// validate reports every impossible value of r; prefix is "rollout." in
// config.yaml and empty for the API.
func (r *Rollout) validate(ch *checker, prefix string) {
	if r.ShadowFirst < 0 || r.ShadowFirst > MaxShadowFirst {
		ch.addf(prefix+"shadow_first", "must be in 0s..%s, got %s", MaxShadowFirst, r.ShadowFirst)
	}
	switch {
	case len(r.Steps) == 0:
		ch.addf(prefix+"steps", "must list at least one percentage, ending at 100")
	case len(r.Steps) > MaxRolloutSteps:
		ch.addf(prefix+"steps", "must list at most %d percentages, got %d", MaxRolloutSteps, len(r.Steps))
	default:
		for i, s := range r.Steps {
			field := fmt.Sprintf("%ssteps[%d]", prefix, i)
			switch {
			case s < 1 || s > 100:
				ch.addf(field, "must be a percentage in 1..100, got %d", s)
			case i > 0 && s <= r.Steps[i-1]:
				ch.addf(field, "steps must increase, got %d after %d", s, r.Steps[i-1])
			}
		}
		if last := r.Steps[len(r.Steps)-1]; last != 100 {
			ch.addf(prefix+"steps", "must end at 100, ends at %d", last)
		}
	}
	if r.StepInterval <= 0 || r.StepInterval > MaxStepInterval {
		ch.addf(prefix+"step_interval", "must be in (0s, %s], got %s", MaxStepInterval, r.StepInterval)
	}
	if r.MinRequests < 1 {
		ch.addf(prefix+"min_requests", "must be >= 1, got %d", r.MinRequests)
	}
	if r.OnFailure != OnFailureRollback && r.OnFailure != OnFailureHold {
		ch.addf(prefix+"on_failure", "must be %q or %q, got %q", OnFailureRollback, OnFailureHold, r.OnFailure)
	}
	if r.OnSuccess != OnSuccessPromote && r.OnSuccess != OnSuccessHold {
		ch.addf(prefix+"on_success", "must be %q or %q, got %q", OnSuccessPromote, OnSuccessHold, r.OnSuccess)
	}
	g := r.Gates
	share := func(name string, v *float64) {
		if v != nil && (*v < 0 || *v > 1) {
			ch.addf(prefix+"gates."+name, "must be a share in 0..1, got %v", *v)
		}
	}
	share("max_error_rate", g.MaxErrorRate)
	share("max_error_rate_delta", g.MaxErrorRateDelta)
	share("min_shadow_agreement", g.MinShadowAgreement)
	share("max_accuracy_drop", g.MaxAccuracyDrop)
	if g.MaxP99Ratio != nil && *g.MaxP99Ratio <= 0 {
		ch.addf(prefix+"gates.max_p99_ratio", "must be > 0, got %v", *g.MaxP99Ratio)
	}
	if g.MaxDrift != nil && *g.MaxDrift < 0 {
		ch.addf(prefix+"gates.max_drift", "must be >= 0, got %v", *g.MaxDrift)
	}
}
