package drift

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// versionDir writes prof (when not nil) into a fresh version folder.
func versionDir(t testing.TB, prof *Profile) string {
	t.Helper()
	dir := t.TempDir()
	if prof != nil {
		f, err := os.Create(filepath.Join(dir, ProfileFile))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := prof.WriteTo(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func info(dir string, cfg repository.Config) serving.VersionInfo {
	return serving.VersionInfo{Model: "m", Version: "1", Dir: dir, Config: cfg, Inputs: inputSpec}
}

func parseConfig(t testing.TB, text string) repository.Config {
	t.Helper()
	cfg, err := repository.ParseConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestPrepareRejectsMismatchedProfile(t *testing.T) {
	prof := referenceProfile(t, 8)
	h := NewHub(zap.NewNop(), nil)
	cfg := parseConfig(t, "drift: {}")
	wrong := info(versionDir(t, prof), cfg)
	wrong.Inputs = []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, 32}}}
	if _, err := h.Prepare(wrong); !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), "inputs[0].features: \"INPUT\" has 32 features in the model, 64 in the profile") {
		t.Errorf("mismatched profile: %v", err)
	}
	dir := versionDir(t, nil)
	if err := os.WriteFile(filepath.Join(dir, ProfileFile), []byte(`{"format":1,"rows":1,"bins":0}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Prepare(info(dir, cfg)); !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), "bins: must be >= 1") {
		t.Errorf("malformed profile: %v", err)
	}
	if _, err := h.Prepare(info(versionDir(t, nil), parseConfig(t, "validation: {range: profile}"))); !errors.Is(err, ErrProfile) {
		t.Errorf("range: profile with nothing to learn from: %v", err)
	}
	if _, err := h.Prepare(info(versionDir(t, nil), parseConfig(t, "validation: {range: {B: [0, 1]}}"))); !errors.Is(err, repository.ErrInvalidConfig) {
		t.Errorf("range of an unknown input: %v", err)
	}
	if v, err := h.Prepare(info(versionDir(t, prof), cfg)); err != nil || v != nil {
		t.Errorf("good profile without validation: %v, %v", v, err)
	}
	if _, src := h.Monitor("m", "1").Profile(); src != SourceFile {
		t.Errorf("source %s, want file", src)
	}
}

func TestHubTap(t *testing.T) {
	prof := referenceProfile(t, 9)
	h := NewHub(zap.NewNop(), nil)
	if _, err := h.Prepare(info(versionDir(t, prof), parseConfig(t, "drift: {sample: 0.5}"))); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(10, 10))
	kept := int64(0)
	for range 100 {
		in := fp32("INPUT", 10, features, normalRows(r, 10, -1))
		rec := &serving.Record{Model: "m", Version: "1", Class: serving.ClassOK, Arrival: time.Now(), Inputs: []tensor.Tensor{in}, Outputs: []tensor.Tensor{}}
		s, ok := h.Keep(rec)
		if !ok {
			continue
		}
		// Keep copied: scribbling over the request's buffer changes nothing.
		clear(in.Data)
		n, _ := rows(s.in[0])
		kept += n
		h.Consume(s)
	}
	reps, err := h.Reports("m", "")
	if err != nil {
		t.Fatal(err)
	}
	if rep := reps[0]; rep.Rows != kept || kept < 350 || kept > 650 {
		t.Errorf("window rows %d, kept %d of 1000 at sample 0.5", rep.Rows, kept)
	}
	if rep := reps[0]; rep.Features[0].PSI > 0.2 { // zeroed rows would give PSI of several
		t.Errorf("rows changed after Keep: max PSI %g", rep.Features[0].PSI)
	}
	if _, ok := h.Keep(&serving.Record{Model: "m", Version: "1", Class: serving.ClassClient, Inputs: []tensor.Tensor{{}}}); ok {
		t.Error("a failed request was kept")
	}
	h.Release("m", "1")
	if _, err := h.Reports("m", "1"); !errors.Is(err, ErrNoReport) {
		t.Errorf("report after release: %v", err)
	}
}

func TestValidation(t *testing.T) {
	prof := referenceProfile(t, 11)
	lo, hi := prof.Inputs[0].Features[7].Min, prof.Inputs[0].Features[7].Max
	row := func(f int, x float64) tensor.Tensor {
		v := make([]float64, 2*features)
		v[features+f] = x
		return fp32("INPUT", 2, features, v)
	}
	for _, tc := range []struct {
		name, cfg string
		in        tensor.Tensor
		want      string // "" accepts
		rule      string
		count     float64
	}{
		{"nan counted", "validation: {}", row(3, math.NaN()), "", RuleNaN, 1},
		{"nan rejected", "validation: {nan: reject}", row(3, math.NaN()), `input "INPUT" row 1 feature 3: NaN is not allowed (validation.nan)`, RuleNaN, 1},
		{"nan allowed", "validation: {nan: allow}", row(3, math.NaN()), "", RuleNaN, 0},
		{"inf rejected", "validation: {inf: reject}", row(5, math.Inf(-1)), `input "INPUT" row 1 feature 5: -Inf is not allowed (validation.inf)`, RuleInf, 1},
		{"in range", "validation: {range: profile, range_action: reject}", row(7, hi), "", RuleRange, 0},
		{"profile range rejected", "validation: {range: profile, range_action: reject, range_tolerance: 0}", row(7, 912.5),
			`input "INPUT" row 1 feature 7: 912.5 is outside the profile range [` + fmtG(lo) + ", " + fmtG(hi) + "] (validation.range)", RuleRange, 1},
		{"profile range counted", "validation: {range: profile}", row(7, 912.5), "", RuleRange, 1},
		{"explicit range", "validation: {range: {INPUT: [-0.5, 0.5]}, range_action: reject}", row(0, -1),
			`input "INPUT" row 1 feature 0: -1 is outside the range [-0.5, 0.5] (validation.range)`, RuleRange, 1},
		{"explicit range counts every value", "validation: {range: {INPUT: [1, 2]}}", row(0, 1.5), "", RuleRange, 2*features - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			h := NewHub(zap.NewNop(), reg)
			val, err := h.Prepare(info(versionDir(t, prof), parseConfig(t, tc.cfg)))
			if err != nil || val == nil {
				t.Fatalf("Prepare: %v, %v", val, err)
			}
			err = val.Validate([]tensor.Tensor{tc.in})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tc.want != "" && (!errors.Is(err, tensor.ErrInvalid) || err.Error() != tc.want):
				t.Errorf("error %v\nwant %s", err, tc.want)
			}
			if got := testutil.ToFloat64(h.metrics.failure("m", "1", "INPUT", tc.rule)); got != tc.count {
				t.Errorf("onnxserve_validation_failures_total{rule=%q} = %g, want %g", tc.rule, got, tc.count)
			}
		})
	}
}

func fmtG(x float64) string { return strconv.FormatFloat(x, 'g', 4, 64) }

// TestScrapeFollowsTheWindow: a scrape recomputes the statistics, so the
// series are current without a request (here: rows that arrived before
// the window are gone from it).
func TestScrapeFollowsTheWindow(t *testing.T) {
	prof := referenceProfile(t, 12)
	reg := prometheus.NewPedanticRegistry()
	h := NewHub(zap.NewNop(), reg)
	if _, err := h.Prepare(info(versionDir(t, prof), parseConfig(t, "drift: {window: 1m}"))); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(13, 13))
	old := time.Now().Add(-10 * time.Minute)
	for range 20 {
		h.Monitor("m", "1").Observe(old, []tensor.Tensor{fp32("INPUT", 10, features, normalRows(r, 10, 7))}, nil)
	}
	if rep := h.Monitor("m", "1").Compute(old); !rep.Alert {
		t.Fatal("no alert on the shifted rows")
	}
	if got := testutil.ToFloat64(h.metrics.alert("m", "1")); got != 1 {
		t.Fatalf("alert gauge %g before the scrape", got)
	}
	n, err := testutil.GatherAndCount(reg, "onnxserve_drift_alert")
	if err != nil || n != 1 {
		t.Fatalf("gather: %d series, %v", n, err)
	}
	if got := testutil.ToFloat64(h.metrics.alert("m", "1")); got != 0 {
		t.Errorf("alert gauge %g after a scrape with an empty window, want 0", got)
	}
}
