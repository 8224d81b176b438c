package serving

import (
	"cmp"
	"maps"
	"slices"
)

// actionKind is what reconciling one model does with one of its versions.
type actionKind int

const (
	// actKeep leaves the serving instance as it is: same file, same config.
	actKeep actionKind = iota
	// actHold changes nothing: these exact bytes and config failed before,
	// so they are not retried until something changes. A serving instance
	// of the version keeps serving.
	actHold
	// actLoad loads a version that has no serving instance (LOADING, then
	// READY or UNAVAILABLE).
	actLoad
	// actReload loads a changed file or config beside the serving
	// instance and swaps it in; if the new one fails, the old one stays.
	actReload
	// actFail records a version that cannot be loaded at all.
	actFail
	// actUnavailable reports a version UNAVAILABLE with the model's config
	// error: a broken config.yaml loads nothing new.
	actUnavailable
	// actRetire drains and frees a serving instance no longer wanted.
	actRetire
	// actForget drops a version that never served and is no longer
	// wanted from the index.
	actForget
)

var actionNames = [...]string{"keep", "hold", "load", "reload", "fail", "unavailable", "retire", "forget"}

func (k actionKind) String() string { return actionNames[k] }

// action is one step of a reconcile plan.
type action struct {
	kind   actionKind
	number int64
	// want is the version on disk (load, reload, fail).
	want DesiredVersion
	// fingerprint identifies the file and config being loaded or failed.
	fingerprint string
	// reason is the UNAVAILABLE reason (unavailable), or the config error
	// a kept version is listed with while it serves on (keep).
	reason string
	// from is the index state the entry must still be in (forget).
	from State
}

// loadedState is what a model holds now, as plan reads it.
type loadedState struct {
	// serving maps each serving version to its instance's fingerprint.
	serving map[int64]string
	// failed maps versions to the fingerprint that last failed to load.
	failed map[int64]string
	// listed maps each version in the index to its state.
	listed map[int64]State
}

// plan decides, without side effects, what reconciling a model's loaded
// state with the desired one takes: one action per desired version, in the
// order given, then retirements and index removals in version order. A
// version's fingerprint is its file's fingerprint and the config's hash, so
// a changed config reloads every version.
func plan(d Desired, st loadedState) []action {
	var acts []action
	if d.ConfigErr != nil {
		reason := "config.yaml: " + d.ConfigErr.Error()
		for _, dv := range d.Versions {
			if _, ok := st.serving[dv.Number]; ok {
				acts = append(acts, action{kind: actKeep, number: dv.Number, reason: reason + "; the previous config keeps serving"})
			} else {
				acts = append(acts, action{kind: actUnavailable, number: dv.Number, reason: reason})
			}
		}
		return acts
	}
	wanted := make(map[int64]bool, len(d.Versions))
	for _, dv := range d.Versions {
		wanted[dv.Number] = true
		fp := dv.Fingerprint + "/" + d.ConfigHash
		a := action{number: dv.Number, want: dv, fingerprint: fp}
		old, serving := st.serving[dv.Number]
		switch {
		case serving && old == fp:
			a.kind = actKeep
		case st.failed[dv.Number] == fp:
			a.kind = actHold
		case dv.Err != nil:
			a.kind = actFail
		case serving:
			a.kind = actReload
		default:
			a.kind = actLoad
		}
		acts = append(acts, a)
	}
	for _, n := range slices.Sorted(maps.Keys(st.serving)) {
		if !wanted[n] {
			acts = append(acts, action{kind: actRetire, number: n})
		}
	}
	for _, n := range slices.SortedFunc(maps.Keys(st.listed), cmp.Compare[int64]) {
		_, serving := st.serving[n]
		if !wanted[n] && !serving && st.listed[n] != StateUnloading {
			acts = append(acts, action{kind: actForget, number: n, from: st.listed[n]})
		}
	}
	return acts
}
