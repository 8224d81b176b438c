package repository

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"gopkg.in/yaml.v3"
)

// Drift and validation defaults and limits.
const (
	// DefaultDriftWindow is the span drift statistics cover when
	// drift.window is absent.
	DefaultDriftWindow = 10 * time.Minute
	// MaxDriftWindow bounds drift.window.
	MaxDriftWindow = 24 * time.Hour
	// DefaultDriftFirstRows is how many rows a reference is learned from
	// when the version has no profile.json.
	DefaultDriftFirstRows = 10000
	// DefaultDriftMaxFeatures bounds the features per tensor exported as
	// metrics when drift.max_features is absent.
	DefaultDriftMaxFeatures = 100
	// MaxDriftMaxFeatures bounds drift.max_features.
	MaxDriftMaxFeatures = 10000
	// DefaultDriftThreshold is drift.alert.threshold when absent.
	DefaultDriftThreshold = 0.2
	// DefaultRangeTolerance is validation.range_tolerance when absent.
	DefaultRangeTolerance = 0.1
)

// The actions of a validation rule.
const (
	ActionReject = "reject"
	ActionCount  = "count"
	ActionAllow  = "allow"
	// RangeProfile takes a range rule's bounds from the reference profile.
	RangeProfile = "profile"
)

// Drift is the drift block: windowed drift statistics of a version's
// inputs and outputs against its reference. A plain value.
type Drift struct {
	// Window is the span the statistics cover, in whole minutes, 1m..24h.
	// [DefaultDriftWindow]
	Window time.Duration
	// Sample is the share of rows monitored, in (0, 1]. [1]
	Sample float64
	// FirstRows is how many rows a reference is learned from when the
	// version folder has no profile.json (reference.first_rows), ≥ 1.
	// [DefaultDriftFirstRows]
	FirstRows int
	// MaxFeatures bounds the features per tensor exported as metrics,
	// 1..MaxDriftMaxFeatures. [DefaultDriftMaxFeatures]
	MaxFeatures int
	// AlertStat (psi, js or ks) and AlertThreshold (> 0): the alert is
	// raised while some feature's statistic is above the threshold.
	// [psi, DefaultDriftThreshold]
	AlertStat      string
	AlertThreshold float64
	// Features sets the feature mode of inputs and outputs by name: flat,
	// channel or none. A tensor not named is flat up to rank 2, channel
	// above.
	Features map[string]string
}

// Validation is the validation block: rules on every request's inputs,
// checked before it is queued. A plain value.
type Validation struct {
	// NaN and Inf say what a NaN or infinite input value does: reject,
	// count or allow. [count]
	NaN, Inf string
	// Range is RangeProfile to check values against the reference
	// profile's range, widened by RangeTolerance times its span; "" for
	// none, unless Ranges gives explicit bounds per input.
	Range  string
	Ranges map[string][2]float64
	// RangeTolerance widens the profile's range, ≥ 0. [DefaultRangeTolerance]
	RangeTolerance float64
	// RangeAction is what a value out of range does: count or reject.
	// [count]
	RangeAction string
}

// floatField decodes a finite number; an integer is a number too.
func (p *parser) floatField(n *yaml.Node, path string, dst *float64) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
		p.typeErr(n, path, "a number")
		return
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		p.typeErr(n, path, "a finite number")
		return
	}
	*dst = v
}

func (p *parser) drift(n *yaml.Node, path string, c *Config) {
	d := &Drift{Window: DefaultDriftWindow, Sample: 1, FirstRows: DefaultDriftFirstRows,
		MaxFeatures: DefaultDriftMaxFeatures, AlertStat: "psi", AlertThreshold: DefaultDriftThreshold}
	c.Drift = d
	p.mapping(n, path, fields{
		"window": func(v *yaml.Node, path string) { p.durationField(v, path, &d.Window) },
		"sample": func(v *yaml.Node, path string) { p.floatField(v, path, &d.Sample) },
		"reference": func(v *yaml.Node, path string) {
			p.mapping(v, path, fields{
				"first_rows": func(v *yaml.Node, path string) { p.intField(v, path, &d.FirstRows) },
			})
		},
		"max_features": func(v *yaml.Node, path string) { p.intField(v, path, &d.MaxFeatures) },
		"alert": func(v *yaml.Node, path string) {
			p.mapping(v, path, fields{
				"stat":      func(v *yaml.Node, path string) { p.stringField(v, path, &d.AlertStat) },
				"threshold": func(v *yaml.Node, path string) { p.floatField(v, path, &d.AlertThreshold) },
			})
		},
		"features": func(v *yaml.Node, path string) {
			v = resolveAlias(v)
			if v.Kind != yaml.MappingNode {
				p.typeErr(v, path, "a mapping of input or output name to flat, channel or none")
				return
			}
			d.Features = map[string]string{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				k := resolveAlias(v.Content[i])
				field := fmt.Sprintf("%s[%q]", path, k.Value)
				if _, dup := d.Features[k.Value]; dup {
					p.ch.errs = append(p.ch.errs, &FieldError{Field: field, Line: k.Line, Msg: "duplicate key"})
					continue
				}
				p.ch.lines[field] = k.Line
				var mode string
				p.stringField(v.Content[i+1], field, &mode)
				d.Features[k.Value] = mode
			}
		},
	})
}

func (p *parser) validation(n *yaml.Node, path string, c *Config) {
	val := &Validation{NaN: ActionCount, Inf: ActionCount, RangeTolerance: DefaultRangeTolerance, RangeAction: ActionCount}
	c.Validation = val
	p.mapping(n, path, fields{
		"nan": func(v *yaml.Node, path string) { p.stringField(v, path, &val.NaN) },
		"inf": func(v *yaml.Node, path string) { p.stringField(v, path, &val.Inf) },
		"range": func(v *yaml.Node, path string) {
			v = resolveAlias(v)
			if v.Kind == yaml.ScalarNode {
				p.stringField(v, path, &val.Range)
				return
			}
			if v.Kind != yaml.MappingNode {
				p.typeErr(v, path, `"profile" or a mapping of input name to [low, high]`)
				return
			}
			val.Ranges = map[string][2]float64{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				k := resolveAlias(v.Content[i])
				field := fmt.Sprintf("%s[%q]", path, k.Value)
				if _, dup := val.Ranges[k.Value]; dup {
					p.ch.errs = append(p.ch.errs, &FieldError{Field: field, Line: k.Line, Msg: "duplicate key"})
					continue
				}
				p.ch.lines[field] = k.Line
				var bounds []float64
				p.sequence(v.Content[i+1], field, func(v *yaml.Node, path string) {
					var x float64
					p.floatField(v, path, &x)
					bounds = append(bounds, x)
				})
				if len(bounds) != 2 {
					p.ch.errs = append(p.ch.errs, &FieldError{Field: field, Line: k.Line, Msg: "must be [low, high]"})
					continue
				}
				val.Ranges[k.Value] = [2]float64{bounds[0], bounds[1]}
			}
		},
		"range_tolerance": func(v *yaml.Node, path string) { p.floatField(v, path, &val.RangeTolerance) },
		"range_action":    func(v *yaml.Node, path string) { p.stringField(v, path, &val.RangeAction) },
	})
}

func (d *Drift) validate(ch *checker) {
	if d.Window < time.Minute || d.Window > MaxDriftWindow || d.Window%time.Minute != 0 {
		ch.addf("drift.window", "must be whole minutes in 1m..%s, got %s", MaxDriftWindow, d.Window)
	}
	if !(d.Sample > 0 && d.Sample <= 1) {
		ch.addf("drift.sample", "must be in (0, 1], got %g", d.Sample)
	}
	if d.FirstRows < 1 {
		ch.addf("drift.reference.first_rows", "must be >= 1, got %d", d.FirstRows)
	}
	if d.MaxFeatures < 1 || d.MaxFeatures > MaxDriftMaxFeatures {
		ch.addf("drift.max_features", "must be in 1..%d, got %d", MaxDriftMaxFeatures, d.MaxFeatures)
	}
	if d.AlertStat != "psi" && d.AlertStat != "js" && d.AlertStat != "ks" {
		ch.addf("drift.alert.stat", "must be psi, js or ks, got %q", d.AlertStat)
	}
	if d.AlertThreshold <= 0 {
		ch.addf("drift.alert.threshold", "must be > 0, got %g", d.AlertThreshold)
	}
	for _, name := range slices.Sorted(maps.Keys(d.Features)) {
		if m := d.Features[name]; m != "flat" && m != "channel" && m != "none" {
			ch.addf(fmt.Sprintf("drift.features[%q]", name), "must be flat, channel or none, got %q", m)
		}
	}
}

func (v *Validation) validate(ch *checker) {
	for field, a := range map[string]string{"validation.nan": v.NaN, "validation.inf": v.Inf} {
		if a != ActionReject && a != ActionCount && a != ActionAllow {
			ch.addf(field, "must be reject, count or allow, got %q", a)
		}
	}
	if v.Range != "" && v.Range != RangeProfile {
		ch.addf("validation.range", `must be "profile" or a mapping of input name to [low, high], got %q`, v.Range)
	}
	for _, name := range slices.Sorted(maps.Keys(v.Ranges)) {
		if b := v.Ranges[name]; !(b[0] < b[1]) {
			ch.addf(fmt.Sprintf("validation.range[%q]", name), "low must be below high, got [%g, %g]", b[0], b[1])
		}
	}
	if v.RangeTolerance < 0 {
		ch.addf("validation.range_tolerance", "must be >= 0, got %g", v.RangeTolerance)
	}
	if v.RangeAction != ActionCount && v.RangeAction != ActionReject {
		ch.addf("validation.range_action", "must be count or reject, got %q", v.RangeAction)
	}
}
