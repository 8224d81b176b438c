package drift

import (
	"math"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// The rules of onnxserve_validation_failures_total.
const (
	RuleNaN   = "nan"
	RuleInf   = "inf"
	RuleRange = "range"
)

// validator runs a version's validation block on each request. Safe for
// concurrent use: it reads the monitor's reference atomically.
type validator struct {
	m        *Monitor
	rules    repository.Validation
	layouts  []layout
	explicit []*[2]float64 // per input; nil for none
	counters [][3]prometheus.Counter
}

func newValidator(m *Monitor, rules repository.Validation, met *Metrics) *validator {
	v := &validator{m: m, rules: rules}
	for _, sp := range m.inputs {
		// Messages number features as drift does; an input drift leaves
		// out is numbered in its default mode.
		l, _ := newLayout(sp.Name, sp.Shape, m.cfg.Modes[sp.Name])
		if l.mode == ModeNone {
			l, _ = newLayout(sp.Name, sp.Shape, DefaultMode(len(sp.Shape)))
		}
		v.layouts = append(v.layouts, l)
		var ex *[2]float64
		if b, ok := rules.Ranges[sp.Name]; ok {
			ex = &b
		}
		v.explicit = append(v.explicit, ex)
		v.counters = append(v.counters, [3]prometheus.Counter{
			met.failure(m.model, m.version, sp.Name, RuleNaN),
			met.failure(m.model, m.version, sp.Name, RuleInf),
			met.failure(m.model, m.version, sp.Name, RuleRange),
		})
	}
	return v
}

// bounds returns the range of input i's feature f, and whether one
// applies, and whether it came from the profile.
func (v *validator) bounds(r *reference, i, f int) (lo, hi float64, ok, fromProfile bool) {
	if ex := v.explicit[i]; ex != nil {
		return ex[0], ex[1], true, false
	}
	if v.rules.Range != repository.RangeProfile || r == nil {
		return 0, 0, false, false
	}
	j := r.inputMon[i]
	if j < 0 || f >= len(r.mons[j].tp.Features) {
		return 0, 0, false, false
	}
	ft := &r.mons[j].tp.Features[f]
	if ft.categorical() || len(ft.Ref) == 1 && ft.Ref[0] == 0 {
		return 0, 0, false, false // no finite reference values
	}
	span := ft.Max - ft.Min
	return ft.Min - v.rules.RangeTolerance*span, ft.Max + v.rules.RangeTolerance*span, true, true
}

// Validate implements serving.Validator. It counts every value that breaks
// a counted rule, and stops at the first that breaks a rejecting one
// (counting it too).
func (v *validator) Validate(in []tensor.Tensor) error {
	r := v.m.ref.Load()
	for i, t := range in {
		if i >= len(v.layouts) || !numeric(t.DataType) {
			continue
		}
		if err := v.check(r, i, t); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) check(r *reference, i int, t tensor.Tensor) error {
	var counts [3]int64
	defer func() {
		for k, c := range counts {
			if c > 0 {
				v.counters[i][k].Add(float64(c))
			}
		}
	}()
	fl := floating(t.DataType)
	checkRange := v.explicit[i] != nil || (v.rules.Range == repository.RangeProfile && r != nil)
	if !fl && !checkRange {
		return nil
	}
	n, per := rows(t)
	l := v.layouts[i]
	bits := 32
	if t.DataType == tensor.FP64 || !fl {
		bits = 64
	}
	for row := range n {
		for o := range per {
			x := value(t.DataType, t.Data, row*per+o)
			switch {
			case fl && math.IsNaN(x):
				if v.rules.NaN == repository.ActionAllow {
					continue
				}
				counts[0]++
				if v.rules.NaN == repository.ActionReject {
					return tensor.Invalidf("input %q row %d feature %d: NaN is not allowed (validation.nan)", t.Name, row, l.feature(t, o))
				}
				continue
			case fl && math.IsInf(x, 0):
				if v.rules.Inf == repository.ActionAllow {
					continue
				}
				counts[1]++
				if v.rules.Inf == repository.ActionReject {
					return tensor.Invalidf("input %q row %d feature %d: %s is not allowed (validation.inf)", t.Name, row, l.feature(t, o), strconv.FormatFloat(x, 'g', -1, bits))
				}
				continue
			}
			if !checkRange {
				continue
			}
			f := l.feature(t, o)
			lo, hi, ok, fromProfile := v.bounds(r, i, f)
			if !ok || (x >= lo && x <= hi) {
				continue
			}
			counts[2]++
			if v.rules.RangeAction == repository.ActionReject {
				what := "range"
				if fromProfile {
					what = "profile range"
				}
				return tensor.Invalidf("input %q row %d feature %d: %s is outside the %s [%s, %s] (validation.range)", t.Name, row, f,
					strconv.FormatFloat(x, 'g', -1, bits), what, strconv.FormatFloat(lo, 'g', 4, 64), strconv.FormatFloat(hi, 'g', 4, 64))
			}
		}
	}
	return nil
}
