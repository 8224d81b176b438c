package drift

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// fp32 makes a [rows, cols] FP32 tensor from row-major values.
func fp32(name string, rows, cols int, v []float64) tensor.Tensor {
	t := tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: []int64{int64(rows), int64(cols)}}
	for _, x := range v {
		t.Data = binary.LittleEndian.AppendUint32(t.Data, math.Float32bits(float32(x)))
	}
	return t
}

const features = 64

var inputSpec = []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, features}}}

// normalRows returns rows of N(0,1)^64 values, shifting feature shifted
// (when ≥ 0) by one standard deviation.
func normalRows(r *rand.Rand, n, shifted int) []float64 {
	v := make([]float64, n*features)
	for i := range v {
		v[i] = float64(float32(r.NormFloat64()))
		if i%features == shifted {
			v[i]++
		}
	}
	return v
}

func referenceProfile(t testing.TB, seed uint64) *Profile {
	t.Helper()
	b, err := NewBuilder(inputSpec, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	for range 20 {
		if err := b.Add([]tensor.Tensor{fp32("INPUT", 1000, features, normalRows(r, 1000, -1))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return b.Profile()
}

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// stream observes rows in batches of 10, all within one minute, and
// returns every value observed, by feature.
func stream(m *Monitor, r *rand.Rand, rows, shifted int) [][]float64 {
	byFeature := make([][]float64, features)
	for i := 0; i < rows; i += 10 {
		v := normalRows(r, 10, shifted)
		for j, x := range v {
			byFeature[j%features] = append(byFeature[j%features], x)
		}
		m.Observe(t0.Add(time.Duration(i)*time.Millisecond), []tensor.Tensor{fp32("INPUT", 10, features, v)}, nil)
	}
	return byFeature
}

// independent computes the statistics of values against a reference
// feature the way the documentation defines them, on its own.
func independent(f Feature, values []float64) (psi, js, ks float64) {
	counts := make([]float64, len(f.Ref))
	for _, x := range values {
		b := len(f.Edges)
		for i, e := range f.Edges {
			if x <= e {
				b = i
				break
			}
		}
		counts[b]++
	}
	k := float64(len(f.Ref))
	var cp, cq float64
	for i, p := range f.Ref {
		q := counts[i] / float64(len(values))
		ps, qs := (p+1e-4)/(1+k*1e-4), (q+1e-4)/(1+k*1e-4)
		psi += (qs - ps) * math.Log(qs/ps)
		m := (p + q) / 2
		if p > 0 {
			js += 0.5 * p * math.Log2(p/m)
		}
		if q > 0 {
			js += 0.5 * q * math.Log2(q/m)
		}
		cp += p
		cq += q
		ks = math.Max(ks, math.Abs(cp-cq))
	}
	return psi, math.Sqrt(js), ks
}

func byFeature(rep Report) map[string]FeatureReport {
	out := map[string]FeatureReport{}
	for _, f := range rep.Features {
		out[f.Tensor+"/"+f.Feature] = f
	}
	return out
}

func TestSyntheticDrift(t *testing.T) {
	prof := referenceProfile(t, 1)
	for _, tc := range []struct {
		name    string
		shifted int
	}{{"same distribution", -1}, {"feature 7 shifted by one sd", 7}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			m, err := NewMonitor("m", "1", inputSpec, nil, prof, Config{}, zap.NewNop(), NewMetrics(reg))
			if err != nil {
				t.Fatal(err)
			}
			values := stream(m, rand.New(rand.NewPCG(2, 2)), 10000, tc.shifted)
			rep := m.Compute(t0.Add(30 * time.Second))
			if rep.Rows != 10000 || rep.Reference != SourceFile {
				t.Fatalf("rows %d reference %q, want 10000 file", rep.Rows, rep.Reference)
			}
			got := byFeature(rep)
			for f := range features {
				fr := got["INPUT/"+strconv.Itoa(f)]
				psi, js, ks := independent(prof.Inputs[0].Features[f], values[f])
				if math.Abs(fr.PSI-psi) > 1e-9 || math.Abs(fr.JS-js) > 1e-9 || math.Abs(fr.KS-ks) > 1e-9 {
					t.Errorf("feature %d: got %+v, independent psi %g js %g ks %g", f, fr.Stats, psi, js, ks)
				}
				switch {
				case tc.shifted < 0 && fr.PSI >= 0.02:
					t.Errorf("feature %d: PSI %g, want < 0.02", f, fr.PSI)
				case tc.shifted == f && fr.PSI <= 0.2:
					t.Errorf("feature %d (shifted): PSI %g, want > 0.2", f, fr.PSI)
				case tc.shifted >= 0 && tc.shifted != f && fr.PSI >= 0.05:
					t.Errorf("feature %d: PSI %g, want < 0.05", f, fr.PSI)
				}
			}
			t.Logf("feature 7 PSI %.4f; most drifted %s PSI %.4f", got["INPUT/7"].PSI, rep.Features[0].Feature, rep.Features[0].PSI)
			wantAlert := tc.shifted >= 0
			if rep.Alert != wantAlert {
				t.Errorf("alert %v, want %v", rep.Alert, wantAlert)
			}
			if wantAlert && (rep.Features[0].Feature != "7") {
				t.Errorf("most drifted feature %q, want 7", rep.Features[0].Feature)
			}
			if g := testutil.ToFloat64(m.metrics.alert("m", "1")); g != map[bool]float64{true: 1, false: 0}[wantAlert] {
				t.Errorf("onnxserve_drift_alert %g", g)
			}
			if g := testutil.ToFloat64(m.metrics.drift.WithLabelValues("m", "1", "INPUT", "7", "psi")); g != got["INPUT/7"].PSI {
				t.Errorf("onnxserve_drift feature 7 psi %g, report %g", g, got["INPUT/7"].PSI)
			}
			if g := testutil.ToFloat64(m.metrics.drift.WithLabelValues("m", "1", "INPUT", MaxFeatureLabel, "psi")); g != rep.Features[0].PSI {
				t.Errorf("onnxserve_drift _max psi %g, want %g", g, rep.Features[0].PSI)
			}
		})
	}
}

func TestOutputClassMix(t *testing.T) {
	outSpec := []tensor.Spec{{Name: "OUTPUT", DataType: tensor.FP32, Shape: []int64{-1, 3}}}
	in := []tensor.Spec{{Name: "X", DataType: tensor.FP32, Shape: []int64{-1, 1}}}
	// rowsOf makes n rows whose predicted class follows weights.
	rowsOf := func(r *rand.Rand, n int, weights []float64) (tensor.Tensor, tensor.Tensor) {
		var out, x []float64
		for range n {
			u, c := r.Float64(), 0
			for c < 2 && u > weights[c] {
				u -= weights[c]
				c++
			}
			p := []float64{0.1, 0.1, 0.1}
			p[c] = 0.8
			out = append(out, p...)
			x = append(x, 1)
		}
		return fp32("X", n, 1, x), fp32("OUTPUT", n, 3, out)
	}
	r := rand.New(rand.NewPCG(3, 3))
	b, err := NewBuilder(in, outSpec, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	xi, xo := rowsOf(r, 6000, []float64{1. / 3, 1. / 3, 1. / 3})
	if err := b.Add([]tensor.Tensor{xi}, []tensor.Tensor{xo}); err != nil {
		t.Fatal(err)
	}
	prof := b.Profile()
	if c := prof.Outputs[0].Class; c == nil || len(c.Values) != 3 {
		t.Fatalf("no class distribution in the output profile: %+v", prof.Outputs[0])
	}
	for _, tc := range []struct {
		name    string
		weights []float64
		drift   bool
	}{{"same mix", []float64{1. / 3, 1. / 3, 1. / 3}, false}, {"changed mix", []float64{0.7, 0.2, 0.1}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMonitor("m", "1", in, outSpec, prof, Config{}, zap.NewNop(), NewMetrics(nil))
			if err != nil {
				t.Fatal(err)
			}
			for range 50 {
				xi, xo := rowsOf(r, 100, tc.weights)
				m.Observe(t0, []tensor.Tensor{xi}, []tensor.Tensor{xo})
			}
			rep := m.Compute(t0)
			cls := byFeature(rep)["OUTPUT/"+ClassFeature]
			if got := cls.PSI > 0.2; got != tc.drift || rep.Alert != tc.drift {
				t.Errorf("class PSI %g alert %v, want drift %v", cls.PSI, rep.Alert, tc.drift)
			}
			largest := 0.0
			for _, f := range rep.Features {
				if f.Tensor == "OUTPUT" {
					largest = max(largest, f.PSI)
				}
			}
			v, rows, src, ok := m.OutputDrift(t0)
			if !ok || src != SourceFile || rows != 5000 || v != largest || (v > 0.2) != tc.drift {
				t.Errorf("OutputDrift = %g, %d rows, %s, %v; want %g (largest output PSI), 5000 rows, file, true", v, rows, src, ok, largest)
			}
		})
	}
}

func TestOutputDriftNeedsAnOutput(t *testing.T) {
	prof := referenceProfile(t, 5) // inputs only
	m, err := NewMonitor("m", "1", inputSpec, nil, prof, Config{}, zap.NewNop(), NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := m.OutputDrift(t0); ok {
		t.Error("a reference without outputs gives an output drift signal")
	}
	outSpec := []tensor.Spec{{Name: "OUTPUT", DataType: tensor.FP32, Shape: []int64{-1, 3}}}
	learning, err := NewMonitor("m", "1", inputSpec, outSpec, nil, Config{}, zap.NewNop(), NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	if v, rows, src, ok := learning.OutputDrift(t0); !ok || src != SourceLearning || v != 0 || rows != 0 {
		t.Errorf("learning: %g, %d, %s, %v; want no value yet, source learning, ok", v, rows, src, ok)
	}
}

func TestWindowForgetsOldMinutes(t *testing.T) {
	prof := referenceProfile(t, 4)
	m, err := NewMonitor("m", "1", inputSpec, nil, prof, Config{Window: 3 * time.Minute}, zap.NewNop(), NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	for minute := range 5 {
		m.Observe(t0.Add(time.Duration(minute)*time.Minute), []tensor.Tensor{fp32("INPUT", 10, features, normalRows(r, 10, 7))}, nil)
	}
	// Minutes 1, 2 and 3 whole, and minute 4 so far.
	if rep := m.Compute(t0.Add(4*time.Minute + 30*time.Second)); rep.Rows != 40 || rep.RowsSeen != 50 {
		t.Errorf("rows %d seen %d, want 40 in the 3-minute window (and the current minute) of 50", rep.Rows, rep.RowsSeen)
	}
	if rep := m.Compute(t0.Add(10 * time.Minute)); rep.Rows != 0 {
		t.Errorf("rows %d six minutes after the last, want 0", rep.Rows)
	}
}

func TestLearnedReference(t *testing.T) {
	m, err := NewMonitor("m", "1", inputSpec, nil, nil, Config{FirstRows: 100}, zap.NewNop(), NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(6, 6))
	for range 10 {
		if p, src := m.Profile(); p != nil || src != SourceLearning {
			t.Fatalf("profile before 100 rows: %v %s", p != nil, src)
		}
		m.Observe(t0, []tensor.Tensor{fp32("INPUT", 10, features, normalRows(r, 10, -1))}, nil)
	}
	p, src := m.Profile()
	if p == nil || src != SourceLearned || p.Rows != 100 {
		t.Fatalf("after 100 rows: profile %v source %s", p != nil, src)
	}
	m.Observe(t0, []tensor.Tensor{fp32("INPUT", 10, features, normalRows(r, 10, -1))}, nil)
	if rep := m.Compute(t0); rep.Reference != SourceLearned || rep.Rows != 10 || rep.ReferenceRows != 100 {
		t.Errorf("report %+v", rep)
	}
}

func TestProfileRoundTrip(t *testing.T) {
	prof := referenceProfile(t, 7)
	var buf bytes.Buffer
	if _, err := prof.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ParseProfile(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(prof, back) {
		t.Error("profile changed in a round trip")
	}
	f := prof.Inputs[0].Features[3]
	if len(f.Edges) != DefaultBins-1 || f.Min >= f.Edges[0] || f.Max <= f.Edges[len(f.Edges)-1] || math.Abs(f.Mean) > 0.05 || math.Abs(f.Std-1) > 0.05 {
		t.Errorf("feature 3: %d edges, min %g max %g mean %g std %g", len(f.Edges), f.Min, f.Max, f.Mean, f.Std)
	}
}

func TestProfileErrorsNameTheField(t *testing.T) {
	good := `{"format":1,"rows":2,"bins":2,"inputs":[{"name":"INPUT","datatype":"FP32","mode":"flat","features":[{"edges":[0],"ref":[0.5,0.5],"min":-1,"max":1,"mean":0,"std":1,"nan":0,"inf":0}]}],"outputs":[]}`
	one := []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, 1}}}
	for _, tc := range []struct {
		name, text string
		specs      []tensor.Spec
		want       string
	}{
		{"unknown field", strings.Replace(good, `"rows"`, `"rowz"`, 1), one, `unknown field "rowz"`},
		{"format", strings.Replace(good, `"format":1`, `"format":2`, 1), one, "format: must be 1"},
		{"edges", strings.Replace(good, `"edges":[0]`, `"edges":[0, -1]`, 1), one, "inputs[0].features[0].edges[1]"},
		{"ref length", strings.Replace(good, `"ref":[0.5,0.5]`, `"ref":[1]`, 1), one, "inputs[0].features[0].ref: must have 2 shares"},
		{"nan share", strings.Replace(good, `"nan":0`, `"nan":2`, 1), one, "inputs[0].features[0].nan"},
		{"trailing", good + "{}", one, "data after the profile"},
		{"feature count", good, []tensor.Spec{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{-1, 2}}}, "inputs[0].features: \"INPUT\" has 2 features in the model, 1 in the profile"},
		{"datatype", good, []tensor.Spec{{Name: "INPUT", DataType: tensor.FP64, Shape: []int64{-1, 1}}}, "inputs[0].datatype"},
		{"missing input", good, append(one, tensor.Spec{Name: "B", DataType: tensor.FP32, Shape: []int64{-1, 1}}), `inputs: no entry for "B"`},
		{"extra input", good, []tensor.Spec{{Name: "A", DataType: tensor.FP32, Shape: []int64{-1, 1}}}, `no entry for "A"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseProfile([]byte(tc.text))
			if err == nil {
				err = p.Match(tc.specs, nil, nil)
			}
			if !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrProfile containing %q", err, tc.want)
			}
		})
	}
	if p, err := ParseProfile([]byte(good)); err != nil || p.Match(one, nil, nil) != nil {
		t.Errorf("good profile rejected: %v", err)
	}
}

func TestChannelFeatures(t *testing.T) {
	spec := []tensor.Spec{{Name: "IMG", DataType: tensor.FP32, Shape: []int64{-1, 3, 2, 2}}}
	b, err := NewBuilder(spec, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Channel c holds the values c*10 .. c*10+3.
	var v []float64
	for c := range 3 {
		for k := range 4 {
			v = append(v, float64(c*10+k))
		}
	}
	img := fp32("IMG", 1, 12, v)
	img.Shape = []int64{1, 3, 2, 2}
	if err := b.Add([]tensor.Tensor{img}, nil); err != nil {
		t.Fatal(err)
	}
	p := b.Profile()
	if p.Inputs[0].Mode != ModeChannel || len(p.Inputs[0].Features) != 3 {
		t.Fatalf("mode %s with %d features, want channel with 3", p.Inputs[0].Mode, len(p.Inputs[0].Features))
	}
	for c, f := range p.Inputs[0].Features {
		if f.Min != float64(c*10) || f.Max != float64(c*10+3) {
			t.Errorf("channel %d: min %g max %g", c, f.Min, f.Max)
		}
	}
}

// words makes a [rows, 1] BYTES tensor.
func words(vals ...string) tensor.Tensor {
	t := tensor.Tensor{Name: "TEXT", DataType: tensor.Bytes, Shape: []int64{int64(len(vals)), 1}}
	for _, v := range vals {
		t.Data = tensor.AppendBytesElement(t.Data, []byte(v))
	}
	return t
}

func TestBytesFeatures(t *testing.T) {
	spec := []tensor.Spec{{Name: "TEXT", DataType: tensor.Bytes, Shape: []int64{-1, 1}}}
	b, err := NewBuilder(spec, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ref []string
	for i := range 60 {
		for range 60 - i { // value i appears 60−i times
			ref = append(ref, "w"+strconv.Itoa(i))
		}
	}
	if err := b.Add([]tensor.Tensor{words(ref...)}, nil); err != nil {
		t.Fatal(err)
	}
	f := b.Profile().Inputs[0].Features[0]
	if len(f.Values) != TopValues || f.Values[0] != "w0" || f.Values[49] != "w49" || len(f.Ref) != TopValues+1 {
		t.Fatalf("values %v (%d shares)", f.Values[:3], len(f.Ref))
	}
	if rest := f.Ref[TopValues]; math.Abs(rest-55.0/float64(len(ref))) > 1e-12 { // w50..w59: 10+9+…+1
		t.Errorf("rest share %g", rest)
	}
	m, err := NewMonitor("m", "1", spec, nil, b.Profile(), Config{}, zap.NewNop(), NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(t0, []tensor.Tensor{words(ref...)}, nil)
	if rep := m.Compute(t0); rep.Features[0].PSI > 1e-9 || rep.Rows != int64(len(ref)) {
		t.Errorf("same words: PSI %g rows %d", rep.Features[0].PSI, rep.Rows)
	}
	m.Observe(t0, []tensor.Tensor{words(slices.Repeat([]string{"unseen"}, 2000)...)}, nil)
	if rep := m.Compute(t0); rep.Features[0].PSI < 0.2 || !rep.Alert {
		t.Errorf("unseen words: PSI %g alert %v", rep.Features[0].PSI, rep.Alert)
	}
}
