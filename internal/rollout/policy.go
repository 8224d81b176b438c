package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Phase is where a rollout stands.
type Phase string

// The phases of a rollout: idle → (shadow) → progressing (step k) →
// promoted | rolled_back | held.
const (
	PhaseIdle        Phase = "idle"
	PhaseShadow      Phase = "shadow"
	PhaseProgressing Phase = "progressing"
	PhasePromoted    Phase = "promoted"
	PhaseRolledBack  Phase = "rolled_back"
	PhaseHeld        Phase = "held"
)

// allPhases lists every phase, for the state gauge.
var allPhases = []Phase{PhaseIdle, PhaseShadow, PhaseProgressing, PhasePromoted, PhaseRolledBack, PhaseHeld}

// running reports whether the rollout still owns the model's traffic.
func (p Phase) running() bool {
	return p == PhaseShadow || p == PhaseProgressing || p == PhaseHeld
}

// Policy is how one rollout proceeds; cmd/serve builds it from the model's
// rollout block and the start request's overrides. A plain value.
type Policy struct {
	// ShadowFirst, when > 0, mirrors every request to the candidate for
	// that long before it serves any.
	ShadowFirst time.Duration `json:"shadow_first"`
	// Steps are the candidate's percentages, increasing, ending at 100.
	Steps []int `json:"steps"`
	// StepInterval is the least time at each step.
	StepInterval time.Duration `json:"step_interval"`
	// MinRequests is the least number of candidate requests in a step's
	// window (mirrored ones in the shadow phase) before it is judged.
	MinRequests int `json:"min_requests"`
	// Gates are the thresholds; a nil one is not applied.
	Gates Gates `json:"gates"`
	// HoldOnFailure keeps the step's weights when a gate fails, instead of
	// rolling back; an operator then aborts or promotes.
	HoldOnFailure bool `json:"hold_on_failure"`
	// HoldOnSuccess waits at 100% for an operator's promote instead of
	// promoting after the last step.
	HoldOnSuccess bool `json:"hold_on_success"`
}

// Gates are a rollout's thresholds; a nil field is a gate not applied.
type Gates struct {
	// MaxErrorRate bounds the candidate's 5xx answers plus model
	// rejections, as a share of its requests.
	MaxErrorRate *float64 `json:"max_error_rate,omitempty"`
	// MaxErrorRateDelta bounds the candidate's error rate minus the
	// baseline's.
	MaxErrorRateDelta *float64 `json:"max_error_rate_delta,omitempty"`
	// MaxP99Ratio bounds the candidate's p99 latency over the baseline's.
	MaxP99Ratio *float64 `json:"max_p99_ratio,omitempty"`
	// MinShadowAgreement is the least share of mirrored requests whose
	// answer agrees with the primary's (shadow phase).
	MinShadowAgreement *float64 `json:"min_shadow_agreement,omitempty"`
	// MaxAccuracyDrop bounds the baseline's accuracy minus the
	// candidate's; it needs an Accuracy signal.
	MaxAccuracyDrop *float64 `json:"max_accuracy_drop,omitempty"`
	// MaxDrift bounds the candidate's output drift; it needs a drift
	// signal, which this server does not have yet.
	MaxDrift *float64 `json:"max_drift,omitempty"`
}

// ErrInvalid marks a start request the rollout refuses (a version that is
// not loaded, a gate on a signal that is missing); cmd/serve wraps it into
// the serving core's invalid-config error so it maps to 400.
var ErrInvalid = errors.New("invalid rollout")

// check reports the first impossible value of p.
func (p Policy) check() error {
	if len(p.Steps) == 0 || p.Steps[len(p.Steps)-1] != 100 {
		return fmt.Errorf("%w: steps: must end at 100", ErrInvalid)
	}
	for i, s := range p.Steps {
		if s < 1 || s > 100 || (i > 0 && s <= p.Steps[i-1]) {
			return fmt.Errorf("%w: steps[%d]: must increase within 1..100, got %d", ErrInvalid, i, s)
		}
	}
	if p.StepInterval <= 0 {
		return fmt.Errorf("%w: step_interval: must be > 0", ErrInvalid)
	}
	if p.MinRequests < 1 {
		return fmt.Errorf("%w: min_requests: must be >= 1", ErrInvalid)
	}
	return nil
}

// policyJSON is Policy with its durations as text ("1m0s"), as GET
// /rollout shows them and the state file keeps them.
type policyJSON struct {
	ShadowFirst   string `json:"shadow_first"`
	Steps         []int  `json:"steps"`
	StepInterval  string `json:"step_interval"`
	MinRequests   int    `json:"min_requests"`
	Gates         Gates  `json:"gates"`
	HoldOnFailure bool   `json:"hold_on_failure"`
	HoldOnSuccess bool   `json:"hold_on_success"`
}

// MarshalJSON writes the durations as text.
func (p Policy) MarshalJSON() ([]byte, error) {
	return json.Marshal(policyJSON{p.ShadowFirst.String(), p.Steps, p.StepInterval.String(), p.MinRequests, p.Gates, p.HoldOnFailure, p.HoldOnSuccess})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Policy) UnmarshalJSON(data []byte) error {
	var j policyJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	sf, err := time.ParseDuration(j.ShadowFirst)
	if err != nil {
		return fmt.Errorf("shadow_first: %w", err)
	}
	si, err := time.ParseDuration(j.StepInterval)
	if err != nil {
		return fmt.Errorf("step_interval: %w", err)
	}
	*p = Policy{sf, j.Steps, si, j.MinRequests, j.Gates, j.HoldOnFailure, j.HoldOnSuccess}
	return nil
}
