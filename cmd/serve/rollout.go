package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/onnxserve/onnxserve/internal/drift"
	"github.com/onnxserve/onnxserve/internal/quality"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/rollout"
	"github.com/onnxserve/onnxserve/internal/serving"
)

// newRollouts builds the rollout manager over the serving core: its meter
// as a tap, its state files, its metrics. accuracy may be nil.
func (a *app) newRollouts(accuracy rollout.Accuracy, drift rollout.Drift) (*rollout.Manager, error) {
	m, err := rollout.NewMetrics(a.reg)
	if err != nil {
		return nil, err
	}
	meter := rollout.NewMeter()
	if err := meter.Register(a.srv); err != nil {
		return nil, err
	}
	store := rollout.BesideConfig(a.o.modelRepository)
	if a.o.rolloutStateDir != "" {
		store = rollout.InFolder(a.o.rolloutStateDir)
	}
	cfg := rollout.Config{Routing: a.srv, Versions: a.srv, Shadows: a.srv, Store: store, Tick: a.o.rolloutTick}
	if accuracy != nil {
		cfg.Accuracy = accuracy
	}
	if drift != nil {
		cfg.Drift = drift
	}
	return rollout.NewManager(cfg, meter, a.log.Named("rollout"), m), nil
}

// rolloutAPI adapts the manager to the HTTP front end: it parses a start
// request against the model's config.yaml rollout block.
type rolloutAPI struct {
	m    *rollout.Manager
	srv  *serving.Server
	root string
}

func (r rolloutAPI) StartRollout(model string, body []byte) (any, error) {
	if _, err := r.srv.Traffic(model); err != nil {
		return nil, err
	}
	base := repository.DefaultRollout()
	cfg, err := repository.LoadConfig(filepath.Join(r.root, model, repository.ConfigFileName))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", serving.ErrInvalidConfig, err)
	}
	if cfg.Rollout != nil {
		base = *cfg.Rollout
	}
	req, err := repository.ParseRolloutRequest(body, base)
	if err != nil {
		return nil, err
	}
	st, err := r.m.Start(model, req.Candidate, req.Baseline, policyOf(req.Policy))
	return view(st), invalid(err)
}

func (r rolloutAPI) Rollout(model string) (any, error) {
	if _, err := r.srv.Traffic(model); err != nil {
		return nil, err
	}
	return view(r.m.Status(model)), nil
}

func (r rolloutAPI) PromoteRollout(model string) (any, error) {
	st, err := r.m.Promote(model)
	return view(st), err
}

func (r rolloutAPI) AbortRollout(model string) (any, error) {
	st, err := r.m.Abort(model)
	return view(st), err
}

// invalid makes a refused start a 400.
func invalid(err error) error {
	if errors.Is(err, rollout.ErrInvalid) {
		return fmt.Errorf("%w: %w", serving.ErrInvalidConfig, err)
	}
	return err
}

// rolloutView is GET /rollout's document: the status plus the candidate's
// current percent.
type rolloutView struct {
	rollout.Status
	Percent int `json:"percent"`
}

func view(st rollout.Status) rolloutView { return rolloutView{st, st.Percent()} }

// policyOf turns a rollout block into the manager's policy.
func policyOf(r repository.Rollout) rollout.Policy {
	return rollout.Policy{
		ShadowFirst:  r.ShadowFirst,
		Steps:        r.Steps,
		StepInterval: r.StepInterval,
		MinRequests:  r.MinRequests,
		Gates: rollout.Gates{
			MaxErrorRate:       r.Gates.MaxErrorRate,
			MaxErrorRateDelta:  r.Gates.MaxErrorRateDelta,
			MaxP99Ratio:        r.Gates.MaxP99Ratio,
			MinShadowAgreement: r.Gates.MinShadowAgreement,
			MaxAccuracyDrop:    r.Gates.MaxAccuracyDrop,
			MaxDrift:           r.Gates.MaxDrift,
		},
		HoldOnFailure: r.OnFailure == repository.OnFailureHold,
		HoldOnSuccess: r.OnSuccess == repository.OnSuccessHold,
	}
}

// qualityAccuracy is the rollout's accuracy signal read from the quality
// loop: the labelled rows of a version whose ground truth arrived since a
// time, from the quality report over that window. A model without a
// monitoring block, or one whose task has no accuracy (regression), has no
// signal.
type qualityAccuracy struct{ m *quality.Monitor }

func (q qualityAccuracy) Accuracy(model, version string, since time.Time) (correct, labelled int64, ok bool) {
	// A report window of 0 would mean the model's configured window.
	window := max(time.Since(since), time.Millisecond)
	rep, err := q.m.Report(model, version, window)
	switch {
	case errors.Is(err, quality.ErrNotMonitored):
		return 0, 0, false
	case err != nil:
		return 0, 0, true // monitored, but nothing to read now (a version it does not know yet)
	case rep.Task == quality.TaskRegression.String():
		return 0, 0, false
	}
	for _, v := range rep.Versions {
		if v.Version == version && v.Accuracy != nil {
			n := int64(v.Labelled)
			return int64(*v.Accuracy*float64(n) + 0.5), n, true
		}
	}
	return 0, 0, true
}

// driftSignal is the rollout's drift signal read from the drift monitors:
// a version's largest output drift over its drift window. A version
// without a drift block, or whose reference covers no output, has none.
type driftSignal struct{ h *drift.Hub }

func (d driftSignal) OutputDrift(model, version string) (rollout.OutputDrift, bool) {
	v, rows, src, ok := d.h.OutputDrift(model, version)
	od := rollout.OutputDrift{Value: v, Rows: rows}
	if src == drift.SourceLearning {
		od.Note = "the drift reference is still being learned"
	}
	return od, ok
}
