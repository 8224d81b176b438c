package quality

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/onnxserve/onnxserve/internal/serving"
)

// Report is a model's quality over a sliding window, per version, from
// the labelled rows kept in the store (so it survives a restart).
type Report struct {
	Model    string          `json:"model"`
	Task     string          `json:"task"`
	Window   string          `json:"window"`
	Versions []VersionReport `json:"versions"`
}

// VersionReport is one version's quality. Fields that do not apply to the
// task, or have no data, are left out.
type VersionReport struct {
	Version string `json:"version"`
	// Labelled counts the labelled rows in the window.
	Labelled int `json:"labelled"`
	// Classification and binary.
	Accuracy  *float64      `json:"accuracy,omitempty"`
	MacroF1   *float64      `json:"macro_f1,omitempty"`
	Classes   []ClassReport `json:"classes,omitempty"`
	Confusion *Confusion    `json:"confusion_matrix,omitempty"`
	// Binary: the exact ROC-AUC over the window's scores; absent while
	// the window lacks a positive or a negative row.
	ROCAUC *float64 `json:"roc_auc,omitempty"`
	// Regression.
	MAE  *float64 `json:"mae,omitempty"`
	RMSE *float64 `json:"rmse,omitempty"`
}

// ClassReport is one class's precision, recall and F1 (0 where undefined,
// as when the class was never predicted) and support (its actual rows).
type ClassReport struct {
	Class     string  `json:"class"`
	Index     int     `json:"index"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	Support   int     `json:"support"`
	Predicted int     `json:"predicted"`
}

// Confusion is the confusion matrix over Labels: Rows[i][j] counts rows
// of actual class Labels[i] predicted as Labels[j].
type Confusion struct {
	Labels []string `json:"labels"`
	Rows   [][]int  `json:"rows"`
}

// Report computes model's quality over window (0: the model's configured
// window) for version ("" for every version with labelled rows). The
// classes reported, and averaged in macro F1, are those that occur as an
// actual or a predicted class in the window.
func (q *Monitor) Report(model, version string, window time.Duration) (Report, error) {
	spec, err := q.spec(model, time.Now())
	if err != nil {
		return Report{}, fmt.Errorf("model %q: %w", model, err)
	}
	if version != "" && !slices.Contains(spec.Versions, version) {
		return Report{}, fmt.Errorf("model %q version %q: %w", model, version, serving.ErrVersionNotFound)
	}
	if window <= 0 {
		window = spec.Window
	}
	// Predictions answered before the call are committed before it
	// answers, so a report is also a durability barrier.
	q.progress.catchUp()
	if err := q.store.flush(); err != nil {
		return Report{}, fmt.Errorf("prediction store: %w", err)
	}
	byVersion, err := q.store.events(model, q.cfg.Now().Add(-window).UnixNano())
	if err != nil {
		return Report{}, fmt.Errorf("prediction store: %w", err)
	}
	rep := Report{Model: model, Task: spec.Task.String(), Window: window.String(), Versions: []VersionReport{}}
	versions := spec.Versions
	if version != "" {
		versions = []string{version}
	}
	for v := range byVersion {
		if !slices.Contains(versions, v) && version == "" {
			versions = append(versions, v)
		}
	}
	versions = slices.Clone(versions)
	slices.SortFunc(versions, func(a, b string) int {
		if c := cmp.Compare(len(a), len(b)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, v := range slices.Compact(versions) {
		rep.Versions = append(rep.Versions, versionReport(spec, v, byVersion[v]))
	}
	return rep, nil
}

func versionReport(spec *Spec, version string, evs []event) VersionReport {
	vr := VersionReport{Version: version, Labelled: len(evs)}
	if len(evs) == 0 {
		return vr
	}
	if spec.Task == TaskRegression {
		var abs, sq float64
		for _, e := range evs {
			d := e.value - e.truth
			abs += math.Abs(d)
			sq += d * d
		}
		mae, rmse := abs/float64(len(evs)), math.Sqrt(sq/float64(len(evs)))
		vr.MAE, vr.RMSE = &mae, &rmse
		return vr
	}
	present := map[int32]bool{}
	for _, e := range evs {
		present[e.actual], present[e.pred] = true, true
	}
	classes := make([]int32, 0, len(present))
	for c := range present {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	at := make(map[int32]int, len(classes))
	conf := &Confusion{Labels: make([]string, len(classes)), Rows: make([][]int, len(classes))}
	for i, c := range classes {
		at[c] = i
		conf.Labels[i] = spec.className(c)
		conf.Rows[i] = make([]int, len(classes))
	}
	correct := 0
	for _, e := range evs {
		conf.Rows[at[e.actual]][at[e.pred]]++
		if e.actual == e.pred {
			correct++
		}
	}
	acc := float64(correct) / float64(len(evs))
	vr.Accuracy, vr.Confusion = &acc, conf
	sumF1 := 0.0
	for i, c := range classes {
		tp, support, predicted := conf.Rows[i][i], 0, 0
		for j := range classes {
			support += conf.Rows[i][j]
			predicted += conf.Rows[j][i]
		}
		cr := ClassReport{Class: spec.className(c), Index: int(c), Support: support, Predicted: predicted}
		if predicted > 0 {
			cr.Precision = float64(tp) / float64(predicted)
		}
		if support > 0 {
			cr.Recall = float64(tp) / float64(support)
		}
		if support+predicted > 0 {
			cr.F1 = 2 * float64(tp) / float64(support+predicted)
		}
		sumF1 += cr.F1
		vr.Classes = append(vr.Classes, cr)
	}
	macro := sumF1 / float64(len(classes))
	vr.MacroF1 = &macro
	if spec.Task == TaskBinary {
		vr.ROCAUC = rocAUC(evs, int32(spec.PositiveClass))
	}
	return vr
}

// rocAUC is the exact area under the ROC curve: the probability that a
// positive row scores above a negative one, ties counting half
// (Mann-Whitney U over midranks). nil without both kinds of rows.
func rocAUC(evs []event, positive int32) *float64 {
	type sc struct {
		s   float64
		pos bool
	}
	all := make([]sc, len(evs))
	npos := 0
	for i, e := range evs {
		all[i] = sc{e.score, e.actual == positive}
		if all[i].pos {
			npos++
		}
	}
	nneg := len(all) - npos
	if npos == 0 || nneg == 0 {
		return nil
	}
	slices.SortFunc(all, func(a, b sc) int { return cmp.Compare(a.s, b.s) })
	rankSum := 0.0
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].s == all[i].s {
			j++
		}
		mid := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			if all[k].pos {
				rankSum += mid
			}
		}
		i = j
	}
	auc := (rankSum - float64(npos)*float64(npos+1)/2) / (float64(npos) * float64(nneg))
	return &auc
}
