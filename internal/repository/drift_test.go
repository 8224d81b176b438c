package repository

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDriftAndValidationConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
drift:
  window: 5m
  sample: 0.5
  reference: {first_rows: 500}
  max_features: 8
  alert: {stat: js, threshold: 0.3}
  features: {IMG: channel, OUT: none}
validation:
  nan: reject
  inf: allow
  range: {INPUT: [-10, 10.5]}
  range_tolerance: 0
  range_action: reject
`))
	if err != nil {
		t.Fatal(err)
	}
	wantD := &Drift{Window: 5 * time.Minute, Sample: 0.5, FirstRows: 500, MaxFeatures: 8, AlertStat: "js", AlertThreshold: 0.3,
		Features: map[string]string{"IMG": "channel", "OUT": "none"}}
	if !reflect.DeepEqual(cfg.Drift, wantD) {
		t.Errorf("drift = %+v, want %+v", cfg.Drift, wantD)
	}
	wantV := &Validation{NaN: "reject", Inf: "allow", Ranges: map[string][2]float64{"INPUT": {-10, 10.5}}, RangeAction: "reject"}
	if !reflect.DeepEqual(cfg.Validation, wantV) {
		t.Errorf("validation = %+v, want %+v", cfg.Validation, wantV)
	}
	c := cfg.Clone()
	c.Drift.Features["IMG"] = "flat"
	c.Validation.Ranges["INPUT"] = [2]float64{0, 1}
	if cfg.Drift.Features["IMG"] != "channel" || cfg.Validation.Ranges["INPUT"][0] != -10 {
		t.Error("Clone shares the drift or validation maps")
	}

	def, err := ParseConfig([]byte("drift: {}\nvalidation: {range: profile}"))
	if err != nil {
		t.Fatal(err)
	}
	if d := def.Drift; d.Window != DefaultDriftWindow || d.Sample != 1 || d.FirstRows != DefaultDriftFirstRows ||
		d.MaxFeatures != DefaultDriftMaxFeatures || d.AlertStat != "psi" || d.AlertThreshold != DefaultDriftThreshold {
		t.Errorf("drift defaults = %+v", d)
	}
	if v := def.Validation; v.NaN != ActionCount || v.Inf != ActionCount || v.Range != RangeProfile ||
		v.RangeTolerance != DefaultRangeTolerance || v.RangeAction != ActionCount {
		t.Errorf("validation defaults = %+v", v)
	}
	if none, _ := ParseConfig(nil); none.Drift != nil || none.Validation != nil {
		t.Error("absent blocks are not nil")
	}
}

func TestDriftAndValidationConfigBad(t *testing.T) {
	for _, tc := range []struct{ yaml, field, msg string }{
		{"drift: {window: 90s}", "drift.window", "whole minutes"},
		{"drift: {window: 0s}", "drift.window", "whole minutes"},
		{"drift: {sample: 0}", "drift.sample", "must be in (0, 1]"},
		{"drift: {sample: 1.5}", "drift.sample", "must be in (0, 1]"},
		{"drift: {sample: lots}", "drift.sample", "must be a number"},
		{"drift: {reference: {first_rows: 0}}", "drift.reference.first_rows", "must be >= 1"},
		{"drift: {reference: {rows: 5}}", "drift.reference.rows", "unknown field"},
		{"drift: {max_features: 0}", "drift.max_features", "must be in 1..10000"},
		{"drift: {alert: {stat: mean}}", "drift.alert.stat", "psi, js or ks"},
		{"drift: {alert: {threshold: -1}}", "drift.alert.threshold", "must be > 0"},
		{"drift: {features: {X: pooled}}", `drift.features["X"]`, "flat, channel or none"},
		{"drift: {colour: red}", "drift.colour", "unknown field"},
		{"validation: {nan: drop}", "validation.nan", "reject, count or allow"},
		{"validation: {inf: 1}", "validation.inf", "must be a string"},
		{"validation: {range: training}", "validation.range", `must be "profile"`},
		{"validation: {range: {X: [3, 1]}}", `validation.range["X"]`, "low must be below high"},
		{"validation: {range: {X: [1]}}", `validation.range["X"]`, "must be [low, high]"},
		{"validation: {range_tolerance: -0.5}", "validation.range_tolerance", "must be >= 0"},
		{"validation: {range_action: allow}", "validation.range_action", "count or reject"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v, want ErrInvalidConfig", err)
			}
			var fes fieldErrors
			var fe *FieldError
			switch {
			case errors.As(err, &fes):
			case errors.As(err, &fe):
				fes = fieldErrors{fe}
			}
			for _, e := range fes {
				if e.Field == tc.field && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("error %v, want field %s with %q", err, tc.field, tc.msg)
		})
	}
}
