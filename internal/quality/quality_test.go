package quality

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func specs(m map[string]Spec) Resolver {
	return func(model string) (Spec, error) {
		s, ok := m[model]
		if !ok {
			return Spec{}, fmt.Errorf("model %q: %w", model, serving.ErrModelNotFound)
		}
		if s.Task == 0 {
			return Spec{}, ErrNotMonitored
		}
		return s, nil
	}
}

var testSpecs = map[string]Spec{
	"cls": {Task: TaskClassification, Labels: []string{"cat", "dog", "fox"}, Classes: 3, Sample: 1, TTL: time.Hour, Window: time.Hour, Versions: []string{"1", "2"}},
	"bin": {Task: TaskBinary, PositiveClass: 1, Threshold: 0.5, Classes: 2, Sample: 1, TTL: time.Hour, Window: time.Hour, Versions: []string{"1"}},
	"reg": {Task: TaskRegression, Sample: 1, TTL: time.Hour, Window: time.Hour, Versions: []string{"1"}},
	"off": {},
}

func newMonitor(t *testing.T, dir string, c *clock, maxBytes int64) (*Monitor, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	q, err := New(Config{StateDir: dir, MaxBytes: maxBytes, Resolve: specs(testSpecs), Now: c.now}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	return q, reg
}

func fp32(rows, cols int, vals ...float32) tensor.Tensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	shape := []int64{int64(rows), int64(cols)}
	return tensor.Tensor{Name: "OUTPUT", DataType: tensor.FP32, Shape: shape, Data: b}
}

// answer hands one answered request to q as serving would, and commits.
func answer(t *testing.T, q *Monitor, model, version, id string, out tensor.Tensor, at time.Time) {
	t.Helper()
	k, ok := q.Keep(&serving.Record{Model: model, Version: version, ID: id, Class: serving.ClassOK, Code: 200,
		Arrival: at, Outputs: []tensor.Tensor{out}})
	if !ok {
		t.Fatalf("%s %s: not kept", model, id)
	}
	q.Consume(k)
}

func num(vs ...float64) []Value {
	out := make([]Value, len(vs))
	for i, v := range vs {
		out[i] = Value{Num: v}
	}
	return out
}

func results(t *testing.T, q *Monitor, model string, items ...Item) []string {
	t.Helper()
	res, err := q.Feedback(model, items)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range res {
		s := r.Result
		if r.Reason != "" {
			s += ": " + r.Reason
		}
		out = append(out, s)
	}
	return out
}

func TestClassificationJoinAndReport(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	q, reg := newMonitor(t, t.TempDir(), c, 0)
	defer q.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	type row struct{ actual, pred [2]int }
	var want [2][3][3]int // version, actual, predicted
	for i := range 300 {
		id := fmt.Sprintf("req-%d", i)
		ver := []string{"1", "2"}[i%2]
		vals := make([]float32, 6)
		var truth [2]float64
		for r := range 2 {
			p := rng.IntN(3)
			vals[3*r+p] = 0.9
			actual := p
			if rng.Float64() < 0.3*float64(i%2+1) {
				actual = rng.IntN(3)
			}
			truth[r] = float64(actual)
			want[i%2][actual][p]++
		}
		answer(t, q, "cls", ver, id, fp32(2, 3, vals...), c.now())
		// Labels by name and by index both work.
		tr := []Value{{Str: []string{"cat", "dog", "fox"}[int(truth[0])], IsStr: true}, {Num: truth[1]}}
		if got := results(t, q, "cls", Item{ID: id, Truth: tr}); got[0] != ResultMatched {
			t.Fatalf("%s: %v", id, got)
		}
	}
	rep, err := q.Report("cls", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Versions) != 2 {
		t.Fatalf("versions %+v", rep.Versions)
	}
	for vi, vr := range rep.Versions {
		m := want[vi]
		n, correct, macro := 0, 0, 0.0
		for a := range 3 {
			sup, pred := 0, 0
			for p := range 3 {
				n += m[a][p]
				sup += m[a][p]
				pred += m[p][a]
			}
			correct += m[a][a]
			prec, rec := float64(m[a][a])/float64(pred), float64(m[a][a])/float64(sup)
			f1 := 2 * prec * rec / (prec + rec)
			macro += f1 / 3
			cr := vr.Classes[a]
			if cr.Support != sup || cr.Predicted != pred || math.Abs(cr.F1-f1) > 1e-9 || math.Abs(cr.Precision-prec) > 1e-9 || math.Abs(cr.Recall-rec) > 1e-9 {
				t.Errorf("v%s class %d: %+v, want support %d precision %v recall %v f1 %v", vr.Version, a, cr, sup, prec, rec, f1)
			}
			for p := range 3 {
				if vr.Confusion.Rows[a][p] != m[a][p] {
					t.Errorf("v%s confusion[%d][%d] = %d, want %d", vr.Version, a, p, vr.Confusion.Rows[a][p], m[a][p])
				}
				got := testutil.ToFloat64(q.m.labelled.WithLabelValues("cls", vr.Version, []string{"cat", "dog", "fox"}[a], []string{"cat", "dog", "fox"}[p]))
				if int(got) != m[a][p] {
					t.Errorf("v%s counter[%d][%d] = %v, want %d", vr.Version, a, p, got, m[a][p])
				}
			}
		}
		if vr.Labelled != n || math.Abs(*vr.Accuracy-float64(correct)/float64(n)) > 1e-9 || math.Abs(*vr.MacroF1-macro) > 1e-9 {
			t.Errorf("v%s: labelled %d accuracy %v macro %v, want %d %v %v", vr.Version, vr.Labelled, *vr.Accuracy, *vr.MacroF1, n, float64(correct)/float64(n), macro)
		}
	}
	if got := testutil.ToFloat64(q.m.feedback.WithLabelValues("cls", "1", ResultMatched)); got != 150 {
		t.Errorf("matched v1 = %v, want 150", got)
	}
	if n, err := testutil.GatherAndCount(reg, "onnxserve_predictions_total"); err != nil || n != 6 {
		t.Errorf("predictions_total series = %d (%v), want 6", n, err)
	}
}

func TestFeedbackResults(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	dir := t.TempDir()
	q, _ := newMonitor(t, dir, c, 0)
	answer(t, q, "cls", "2", "late", fp32(1, 3, 0.1, 0.8, 0.1), c.now())
	c.add(30 * time.Minute)
	answer(t, q, "cls", "1", "a", fp32(1, 3, 0.1, 0.8, 0.1), c.now())
	answer(t, q, "cls", "1", "b", fp32(2, 3, 0.1, 0.8, 0.1, 0.7, 0.2, 0.1), c.now())
	answer(t, q, "cls", "2", "fresh", fp32(1, 3, 0.1, 0.8, 0.1), c.now())
	c.add(31 * time.Minute) // "late" is past its hour, the others are not

	got := results(t, q, "cls",
		Item{ID: "a", Truth: num(1)},
		Item{ID: "a", Truth: num(0)},
		Item{ID: "nope", Truth: num(1)},
		Item{ID: "b", Truth: num(1)},
		Item{ID: "b", Truth: []Value{{Str: "wolf", IsStr: true}, {Num: 0}}},
		Item{ID: "b", Truth: num(3, 0)},
		Item{ID: "b", Truth: num(1.5, 0)},
		Item{ID: "late", Truth: num(1)},
		Item{ID: "", Truth: num(1)},
		Item{ID: "s1", Truth: num(2), Version: "2", Prediction: []Value{{Str: "fox", IsStr: true}}},
		Item{ID: "s2", Truth: num(2), Version: "9", Prediction: num(2)},
		Item{ID: "s1", Truth: num(2), Version: "2", Prediction: num(2)},
	)
	want := []string{
		ResultMatched, ResultDuplicate, ResultUnknownID,
		"invalid: ground_truth has 1 rows, the prediction 2",
		`invalid: ground_truth[0]: label "wolf" is not a class of the labels file`,
		"invalid: ground_truth[0]: class 3 is outside the class set 0..2",
		"invalid: ground_truth[0]: class 1.5 is not an integer index",
		ResultExpired, "invalid: id is required",
		ResultMatched, `invalid: model_version "9" is not a version of the model`, ResultDuplicate,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("results:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, tt := range []struct {
		ver, result string
		n           float64
	}{{"1", ResultMatched, 1}, {"1", ResultDuplicate, 0}, {"", ResultDuplicate, 1}, {"2", ResultDuplicate, 1}, {"", ResultUnknownID, 1}, {"", ResultExpired, 1}, {"", ResultInvalid, 6}, {"2", ResultMatched, 1}} {
		if got := testutil.ToFloat64(q.m.feedback.WithLabelValues("cls", tt.ver, tt.result)); got != tt.n {
			t.Errorf("feedback_total{version=%q,result=%s} = %v, want %v", tt.ver, tt.result, got, tt.n)
		}
	}
	if _, err := q.Feedback("off", []Item{{ID: "a", Truth: num(1)}}); err == nil || !strings.Contains(err.Error(), "no monitoring block") {
		t.Errorf("unmonitored model: %v", err)
	}
	if _, err := q.Feedback("ghost", []Item{{ID: "a", Truth: num(1)}}); err == nil {
		t.Error("unknown model: no error")
	}

	// A restart keeps what is pending: "fresh" and "b" still match.
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2, _ := newMonitor(t, dir, c, 0)
	defer q2.Close()
	got = results(t, q2, "cls", Item{ID: "fresh", Truth: num(1)}, Item{ID: "b", Truth: num(1, 0)}, Item{ID: "a", Truth: num(1)})
	if want := []string{ResultMatched, ResultMatched, ResultDuplicate}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("after restart: %v, want %v", got, want)
	}
	rep, err := q2.Report("cls", "1", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Version 1's window holds a (one row, right) and b (two rows, right),
	// labelled before and after the restart.
	if v := rep.Versions[0]; v.Labelled != 3 || v.Accuracy == nil || *v.Accuracy != 1 {
		t.Errorf("v1 after restart: %+v", v)
	}
}

func TestBinaryAUCAndRegression(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	q, _ := newMonitor(t, t.TempDir(), c, 0)
	defer q.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	var scores []float64
	var labels []bool
	var abs, sq float64
	for i := range 200 {
		s := float32(math.Round(rng.Float64()*20) / 20) // ties on purpose
		pos := rng.Float64() < float64(s)
		answer(t, q, "bin", "1", fmt.Sprint("b", i), fp32(1, 2, 1-s, s), c.now())
		truth := 0.0
		if pos {
			truth = 1
		}
		scores, labels = append(scores, float64(s)), append(labels, pos)
		if r := results(t, q, "bin", Item{ID: fmt.Sprint("b", i), Truth: num(truth)}); r[0] != ResultMatched {
			t.Fatal(r)
		}
		v, y := rng.NormFloat64(), rng.NormFloat64()
		answer(t, q, "reg", "1", fmt.Sprint("r", i), fp32(1, 1, float32(v)), c.now())
		d := float64(float32(v)) - y
		abs, sq = abs+math.Abs(d), sq+d*d
		if r := results(t, q, "reg", Item{ID: fmt.Sprint("r", i), Truth: num(y)}); r[0] != ResultMatched {
			t.Fatal(r)
		}
	}
	// The offline AUC: every (positive, negative) pair, ties half.
	var pairs, wins float64
	for i := range scores {
		for j := range scores {
			if labels[i] && !labels[j] {
				pairs++
				switch {
				case scores[i] > scores[j]:
					wins++
				case scores[i] == scores[j]:
					wins += 0.5
				}
			}
		}
	}
	rep, err := q.Report("bin", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Versions[0].ROCAUC; got == nil || math.Abs(*got-wins/pairs) > 1e-9 {
		t.Errorf("ROC-AUC %v, want %v", got, wins/pairs)
	}
	rep, err = q.Report("reg", "1", 0)
	if err != nil {
		t.Fatal(err)
	}
	v := rep.Versions[0]
	if math.Abs(*v.MAE-abs/200) > 1e-9 || math.Abs(*v.RMSE-math.Sqrt(sq/200)) > 1e-9 {
		t.Errorf("MAE %v RMSE %v, want %v %v", *v.MAE, *v.RMSE, abs/200, math.Sqrt(sq/200))
	}
	if got := testutil.ToFloat64(q.m.rows.WithLabelValues("reg", "1")); got != 200 {
		t.Errorf("rows_total %v", got)
	}
	if got := testutil.ToFloat64(q.m.sqErr.WithLabelValues("reg", "1")); math.Abs(got-sq) > 1e-6 {
		t.Errorf("squared_error_sum %v, want %v", got, sq)
	}
	if _, err := q.Report("reg", "7", 0); err == nil {
		t.Error("report of an unknown version: no error")
	}
}

func TestStoreBoundAndExpiry(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	const bound = 20 << 10
	q, _ := newMonitor(t, t.TempDir(), c, bound)
	defer q.Close()
	for i := range 2000 {
		answer(t, q, "cls", "1", fmt.Sprintf("id-%05d", i), fp32(1, 3, 0.1, 0.8, 0.1), c.now().Add(time.Duration(i)))
	}
	if err := q.store.flush(); err != nil {
		t.Fatal(err)
	}
	if sz := q.store.size(); sz > bound {
		t.Errorf("store holds %d bytes, bound %d", sz, bound)
	}
	evicted := testutil.ToFloat64(q.m.evicted.WithLabelValues("size"))
	if evicted == 0 {
		t.Error("no size eviction counted")
	}
	// Oldest first: the first ids are gone, the last is there.
	got := results(t, q, "cls", Item{ID: "id-00000", Truth: num(1)}, Item{ID: "id-01999", Truth: num(1)})
	if strings.Join(got, ",") != "unknown_id,matched" {
		t.Errorf("after eviction: %v", got)
	}
	c.add(3 * time.Hour)
	if err := q.store.expire(c.now()); err != nil {
		t.Fatal(err)
	}
	if sz := q.store.size(); sz != 0 {
		t.Errorf("after expiry the store holds %d bytes", sz)
	}
	if testutil.ToFloat64(q.m.evicted.WithLabelValues("expired")) == 0 {
		t.Error("no expiry counted")
	}
}

func TestSampling(t *testing.T) {
	kept := 0
	for i := range 10000 {
		if sampled(fmt.Sprint("id", i), 0.25) {
			kept++
		}
	}
	if kept < 2200 || kept > 2800 {
		t.Errorf("sample 0.25 kept %d of 10000", kept)
	}
	if sampled("x", 0) || !sampled("x", 1) {
		t.Error("sample 0 or 1 is not all or nothing")
	}
}

func TestForgetVersion(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	q, reg := newMonitor(t, t.TempDir(), c, 0)
	defer q.Close()
	answer(t, q, "cls", "1", "a", fp32(1, 3, 0.1, 0.8, 0.1), c.now())
	answer(t, q, "cls", "2", "b", fp32(1, 3, 0.1, 0.8, 0.1), c.now())
	results(t, q, "cls", Item{ID: "a", Truth: num(1)}, Item{ID: "b", Truth: num(1)})
	q.ForgetVersion("cls", "2")
	for _, name := range []string{"onnxserve_predictions_total", "onnxserve_labelled_predictions_total", "onnxserve_feedback_total"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 1 {
			t.Errorf("%s: %d series (%v), want version 1's only", name, n, err)
		}
	}
}

// TestUnusableBlockIsLoggedOnceAndCached: a monitoring block that cannot be
// resolved (its labels file is missing) is logged once, not on every
// request, and is not resolved again for each request.
func TestUnusableBlockIsLoggedOnceAndCached(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	calls := 0
	resolve := func(model string) (Spec, error) {
		calls++
		if model != "broken" {
			return Spec{}, fmt.Errorf("model %q: %w", model, serving.ErrModelNotFound)
		}
		return Spec{}, errors.New(`model "broken": monitoring.labels: open broken/labels.txt: no such file or directory`)
	}
	q, err := New(Config{StateDir: t.TempDir(), Resolve: resolve}, zap.New(core), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for i := range 5 {
		if _, ok := q.Keep(&serving.Record{Model: "broken", Version: "1", ID: fmt.Sprint(i), Class: serving.ClassOK, Code: 200,
			Arrival: time.Now(), Outputs: []tensor.Tensor{fp32(1, 3, 0.1, 0.8, 0.1)}}); ok {
			t.Fatal("a request of a model whose block cannot be used was kept")
		}
	}
	if got := logs.FilterMessage("monitoring block unusable: no prediction of the model is kept").Len(); got != 1 || calls != 1 {
		t.Errorf("%d warnings and %d resolutions for 5 requests, want 1 and 1", got, calls)
	}
	for range 3 {
		q.Keep(&serving.Record{Model: "nosuch", Version: "1", ID: "x", Class: serving.ClassOK, Code: 200, Arrival: time.Now(), Outputs: []tensor.Tensor{fp32(1, 3, 0.1, 0.8, 0.1)}})
	}
	if calls != 4 {
		t.Errorf("an unknown model was resolved %d times in 3 requests, want each time (never cached)", calls-1)
	}
}

func TestUUIDKeys(t *testing.T) {
	for id, want := range map[string]bool{
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b":  true,
		"0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B":  false, // another id: kept as text
		"0190a1b2c3d47e5f8a9b0c1d2e3f4a5b":      false,
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5":   false,
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g":  false,
		"0190a1b2+c3d4-7e5f-8a9b-0c1d2e3f4a5b":  false,
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5bb": false,
	} {
		if got := isUUID(id); got != want {
			t.Errorf("isUUID(%q) = %v", id, got)
		}
	}
	u, _ := parseUUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
	if fmt.Sprintf("%x", u) != "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b" {
		t.Errorf("parsed %x", u)
	}

	// Ids in both forms join, across a reopen, and one UUID's versions
	// (primary and shadow) are found together.
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	dir := t.TempDir()
	q, _ := newMonitor(t, dir, c, 0)
	const uid, upper = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"
	answer(t, q, "cls", "1", uid, fp32(1, 3, 0.1, 0.8, 0.1), c.now())
	answer(t, q, "cls", "2", uid, fp32(1, 3, 0.8, 0.1, 0.1), c.now())
	answer(t, q, "cls", "1", upper, fp32(1, 3, 0.1, 0.1, 0.8), c.now())
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, _ = newMonitor(t, dir, c, 0)
	defer q.Close()
	res, err := q.Feedback("cls", []Item{{ID: uid, Truth: num(1)}, {ID: upper, Truth: num(2)}, {ID: strings.ToLower(upper[:35]) + "c", Truth: num(0)}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Result != ResultMatched || strings.Join(res[0].Versions, ",") != "1,2" || res[1].Result != ResultMatched || res[2].Result != ResultUnknownID {
		t.Errorf("results %+v", res)
	}
}

// A store written before UUIDs were keyed by their bytes (each id as text,
// one order entry per prediction) still answers and expires.
func TestStoreOfEarlierKeys(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	dir := t.TempDir()
	q, _ := newMonitor(t, dir, c, 0)
	const uid = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	p := prediction{model: "cls", version: "1", task: TaskClassification, classes: 3, pred: []int32{1},
		at: c.now().UnixNano(), expires: c.now().Add(time.Hour).UnixNano(), deadline: c.now().Add(2 * time.Hour).UnixNano()}
	k := append(appendString(nil, uid), p.version...)
	q.store.mu.Lock()
	err := q.store.update(func(w writer) error {
		if err := w.put(w.pred, k, encodePred(&p)); err != nil {
			return err
		}
		return w.put(w.order, orderKey(p.deadline, kindPred, k), orderValue)
	})
	q.store.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if got := results(t, q, "cls", Item{ID: uid, Truth: num(1)}); got[0] != ResultMatched {
		t.Fatalf("old key: %v", got)
	}
	c.add(3 * time.Hour)
	if err := q.store.expire(c.now()); err != nil {
		t.Fatal(err)
	}
	if sz := q.store.size(); sz != 0 {
		t.Errorf("after expiry the store holds %d bytes", sz)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

// Kept predictions are indexed a group at a time: groups of at most
// groupSize, each within groupSpan, expire with the last deadline of each
// and count every prediction they held; a prediction labelled in the
// meantime is counted once.
func TestGroupedExpiry(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	q, _ := newMonitor(t, t.TempDir(), c, 0)
	defer q.Close()
	const n = 3*groupSize + 5
	for i := range n {
		// Two TTLs interleaved: "cls" waits an hour, "bin" an hour too
		// but arrives 10 s later, so deadlines come in two runs.
		at := c.now()
		model, out := "cls", fp32(1, 3, 0.1, 0.8, 0.1)
		if i%2 == 1 {
			model, out, at = "bin", fp32(1, 1, 0.7), at.Add(10*time.Second)
		}
		answer(t, q, model, "1", fmt.Sprintf("g-%04d", i), out, at)
	}
	if err := q.store.flush(); err != nil {
		t.Fatal(err)
	}
	groups, preds := 0, 0
	err := q.store.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOrder).ForEach(func(k, v []byte) error {
			if k[8] != kindGroup {
				return fmt.Errorf("order entry of kind %q", k[8])
			}
			groups++
			m, err := groupLen(v)
			preds += m
			if m > groupSize {
				t.Errorf("group of %d", m)
			}
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	// 99 "cls" and 98 "bin" predictions, 10 s apart: two runs of
	// deadlines, each of one full group and the rest.
	if preds != n || groups != 4 {
		t.Errorf("%d predictions in %d groups, want %d in 4", preds, groups, n)
	}
	if got := results(t, q, "cls", Item{ID: "g-0000", Truth: num(1)}); got[0] != ResultMatched {
		t.Fatalf("feedback: %v", got)
	}
	// Past the "cls" deadlines (TTL + grace = 2 h) but not the "bin" ones.
	c.add(2*time.Hour + 5*time.Second)
	if err := q.store.expire(c.now()); err != nil {
		t.Fatal(err)
	}
	// The 99 "cls" predictions (g-0000's kept, labelled, until its
	// deadline) and g-0000's labelled row (its window is an hour).
	if got := testutil.ToFloat64(q.m.evicted.WithLabelValues("expired")); got != 100 {
		t.Errorf("expired %v, want 100", got)
	}
	if got := results(t, q, "bin", Item{ID: "g-0001", Truth: num(1)}); got[0] != ResultExpired {
		t.Errorf("bin after its TTL: %v", got)
	}
	c.add(time.Hour)
	if err := q.store.expire(c.now()); err != nil {
		t.Fatal(err)
	}
	// Every prediction once, and the labelled row of g-0000 (its event).
	if got := testutil.ToFloat64(q.m.evicted.WithLabelValues("expired")); got != n+1 {
		t.Errorf("expired %v, want %d", got, n+1)
	}
	if sz := q.store.size(); sz != 0 {
		t.Errorf("after expiry the store holds %d bytes", sz)
	}
}

// While commits fail, predictions wait in memory up to maxPending; the
// rest are dropped and counted, so a broken disk cannot grow the heap.
func TestFailingCommitsBoundPending(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	q, _ := newMonitor(t, t.TempDir(), c, 0)
	if err := q.store.db.Close(); err != nil {
		t.Fatal(err)
	}
	const extra = 100
	for i := range maxPending + extra {
		answer(t, q, "cls", "1", fmt.Sprint("f", i), fp32(1, 3, 0.1, 0.8, 0.1), c.now())
	}
	if n := q.store.pendingLen(); n != maxPending {
		t.Errorf("%d predictions pending, want %d", n, maxPending)
	}
	if got := testutil.ToFloat64(q.m.evicted.WithLabelValues("unwritable")); got != extra {
		t.Errorf("unwritable %v, want %d", got, extra)
	}
	if got := testutil.ToFloat64(q.m.storeErrors); got < 1 {
		t.Errorf("store errors %v", got)
	}
	if err := q.Close(); err == nil {
		t.Error("Close committed to a closed store")
	}
}
