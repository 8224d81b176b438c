package rollout

import (
	"fmt"
)

// Notes of a gate that is not judged.
const (
	noteNoBaseline = "the baseline serves no traffic at this step"
	noteFewBase    = "too few baseline requests in the window"
	noteFewLabels  = "too few labelled predictions in the window"
	noteFewDrift   = "too few sampled rows in the drift window"
)

// minBaseline is the least number of baseline requests (or labels) in a
// window for a gate comparing with the baseline to be judged: a quarter of
// min_requests, at least 1.
func minBaseline(p Policy) int64 { return max(1, int64(p.MinRequests)/4) }

// evaluate reads the current window and judges each configured gate.
// ready is false while the window has fewer than min_requests candidate
// requests (mirrored ones in the shadow phase); no gate is judged then.
// mg.mu is held.
func (mg *Manager) evaluate(r *run) (gates []Gate, ready bool) {
	st := &r.st
	p := st.Policy
	g := p.Gates
	if st.Phase == PhaseShadow {
		now, _ := mg.cfg.Shadows.VersionShadow(st.Model, st.Candidate)
		agreed := now.Agreed - r.shadowStart.Agreed
		compared := agreed + now.Disagreed - r.shadowStart.Disagreed + now.Failed - r.shadowStart.Failed
		st.Window = Window{ShadowCompared: compared}
		if compared < int64(p.MinRequests) {
			return nil, false
		}
		if g.MinShadowAgreement != nil {
			v := float64(agreed) / float64(compared)
			gates = append(gates, Gate{Name: "min_shadow_agreement", Value: v, Threshold: *g.MinShadowAgreement, Judged: true, Pass: v >= *g.MinShadowAgreement})
		}
		return gates, true
	}
	cand := mg.meter.Figures(st.Model, st.Candidate).sub(r.candStart)
	base := mg.meter.Figures(st.Model, st.Baseline).sub(r.baseStart)
	st.Window = Window{CandidateRequests: cand.Requests, BaselineRequests: base.Requests}
	if cand.Requests < int64(p.MinRequests) {
		return nil, false
	}
	noBaseline := st.Weights[st.Baseline] == 0
	// relative judges a gate that compares with the baseline, when the
	// window has enough of the baseline's figures.
	relative := func(name string, threshold float64, have int64, note string, value func() float64, pass func(v float64) bool) {
		gt := Gate{Name: name, Threshold: threshold}
		switch {
		case noBaseline:
			gt.Note = noteNoBaseline
		case have < minBaseline(p):
			gt.Note = fmt.Sprintf("%s (%d of %d)", note, have, minBaseline(p))
		default:
			gt.Value = value()
			gt.Judged, gt.Pass = true, pass(gt.Value)
		}
		gates = append(gates, gt)
	}
	candRate := float64(cand.Errors) / float64(cand.Requests)
	if g.MaxErrorRate != nil {
		gates = append(gates, Gate{Name: "max_error_rate", Value: candRate, Threshold: *g.MaxErrorRate, Judged: true, Pass: candRate <= *g.MaxErrorRate})
	}
	if g.MaxErrorRateDelta != nil {
		relative("max_error_rate_delta", *g.MaxErrorRateDelta, base.Requests, noteFewBase,
			func() float64 { return candRate - float64(base.Errors)/float64(base.Requests) },
			func(v float64) bool { return v <= *g.MaxErrorRateDelta })
	}
	if g.MaxP99Ratio != nil {
		relative("max_p99_ratio", *g.MaxP99Ratio, base.Requests, noteFewBase,
			func() float64 { return float64(cand.Latency.quantile(0.99)) / float64(base.Latency.quantile(0.99)) },
			func(v float64) bool { return v <= *g.MaxP99Ratio })
	}
	if g.MaxAccuracyDrop != nil && mg.cfg.Accuracy != nil {
		cc, cl, _ := mg.cfg.Accuracy.Accuracy(st.Model, st.Candidate, st.StepStarted)
		bc, bl, _ := mg.cfg.Accuracy.Accuracy(st.Model, st.Baseline, st.StepStarted)
		have := min(cl, bl)
		relative("max_accuracy_drop", *g.MaxAccuracyDrop, have, noteFewLabels,
			func() float64 { return float64(bc)/float64(bl) - float64(cc)/float64(cl) },
			func(v float64) bool { return v <= *g.MaxAccuracyDrop })
	}
	if g.MaxDrift != nil && mg.cfg.Drift != nil {
		gates = append(gates, driftGate(mg.cfg.Drift, st.Model, st.Candidate, *g.MaxDrift, minBaseline(p)))
	}
	return gates, true
}

// driftGate judges the candidate's output drift against threshold once its
// drift window holds at least least rows. The drift window is the drift
// block's own (it is not reset at a step), so the value describes the
// candidate's recent outputs against its reference, not the baseline's.
func driftGate(d Drift, model, candidate string, threshold float64, least int64) Gate {
	gt := Gate{Name: "max_drift", Threshold: threshold}
	od, ok := d.OutputDrift(model, candidate)
	switch {
	case !ok:
		gt.Note = "the candidate has no output drift signal"
	case od.Note != "":
		gt.Note = od.Note
	case od.Rows < least:
		gt.Note = fmt.Sprintf("%s (%d of %d)", noteFewDrift, od.Rows, least)
	default:
		gt.Value = od.Value
		gt.Judged, gt.Pass = true, od.Value <= threshold
	}
	return gt
}
