package quality

import (
	"fmt"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// The results of one feedback item.
const (
	// ResultMatched: the ground truth was joined to the prediction(s) and
	// scored.
	ResultMatched = "matched"
	// ResultUnknownID: no prediction is kept under the id (never made,
	// not sampled, evicted, or long expired) and the item carries none.
	ResultUnknownID = "unknown_id"
	// ResultExpired: the prediction waited longer than feedback_ttl.
	ResultExpired = "expired"
	// ResultDuplicate: the id already had its ground truth; the first wins.
	ResultDuplicate = "duplicate"
	// ResultInvalid: the item cannot be scored; Reason says why.
	ResultInvalid = "invalid"
)

// Limits of one feedback call.
const (
	// MaxFeedbackItems bounds the items of one call.
	MaxFeedbackItems = 10000
	// MaxIDLen bounds a request id.
	MaxIDLen = 256
	// MaxRows bounds the rows of one item.
	MaxRows = 1 << 16
)

// ErrTooManyItems: a feedback call over MaxFeedbackItems (a bad request).
var ErrTooManyItems = tensor.Invalidf("more than %d feedback items in one call", MaxFeedbackItems)

// Value is one row's ground truth or prediction: a number (a class index,
// a score or a value) or a string (a label from the labels file).
type Value struct {
	Num   float64
	Str   string
	IsStr bool
}

// Item is one piece of feedback.
type Item struct {
	// ID is the request id the prediction was answered under.
	ID string
	// Truth has one entry per row of the request.
	Truth []Value
	// Version and Prediction, both set, let a replica that never saw the
	// id score it (the stateless path): the version that answered and its
	// prediction per row (a class for classification, the positive-class
	// score for binary, the value for regression). A prediction kept in
	// the store wins over them.
	Version    string
	Prediction []Value
}

// Result is the outcome of one Item, in the order of the call.
type Result struct {
	ID     string `json:"id"`
	Result string `json:"result"`
	// Versions are the versions the ground truth scored (matched).
	Versions []string `json:"versions,omitempty"`
	// Reason says why an item is invalid.
	Reason string `json:"reason,omitempty"`
}

// scored is one labelled row waiting for the commit to be counted.
type scored struct {
	e       event
	classes int32
}

// Feedback joins ground truth to kept predictions of model and scores the
// matches. The error is for the call as a whole: an unknown model (wraps
// serving.ErrModelNotFound), ErrNotMonitored, ErrTooManyItems, or a store
// failure; items that cannot be scored are ResultInvalid instead.
func (q *Monitor) Feedback(model string, items []Item) ([]Result, error) {
	if len(items) > MaxFeedbackItems {
		return nil, ErrTooManyItems
	}
	spec, err := q.spec(model, time.Now())
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", model, err)
	}
	q.progress.catchUp()
	now := q.cfg.Now().UnixNano()
	var results []Result
	var labelled []scored
	q.store.mu.Lock()
	defer q.store.mu.Unlock()
	err = q.store.update(func(w writer) error {
		results, labelled = results[:0], labelled[:0]
		for i := range items {
			res, rows, err := q.join(w.tx, w, spec, model, &items[i], now)
			if err != nil {
				return err
			}
			results = append(results, res)
			labelled = append(labelled, rows...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prediction store: %w", err)
	}
	q.count(spec, model, results, items)
	for i := range labelled {
		q.score(spec, &labelled[i])
	}
	return results, nil
}

// join settles one item inside the store transaction and returns the
// rows it labelled.
func (q *Monitor) join(tx *bolt.Tx, w writer, spec *Spec, model string, it *Item, now int64) (Result, []scored, error) {
	res := Result{ID: it.ID}
	invalid := func(format string, args ...any) (Result, []scored, error) {
		res.Result, res.Reason = ResultInvalid, fmt.Sprintf(format, args...)
		return res, nil, nil
	}
	switch {
	case it.ID == "":
		return invalid("id is required")
	case len(it.ID) > MaxIDLen:
		return invalid("id is longer than %d bytes", MaxIDLen)
	case len(it.Truth) == 0:
		return invalid("ground_truth is required")
	case len(it.Truth) > MaxRows:
		return invalid("ground_truth has more than %d rows", MaxRows)
	}
	all, err := lookup(tx, it.ID)
	if err != nil {
		return res, nil, err
	}
	preds := all[:0]
	for _, p := range all {
		if p.model == model {
			preds = append(preds, p)
		}
	}
	stateless := false
	if len(preds) == 0 {
		if it.Version == "" && it.Prediction == nil {
			res.Result = ResultUnknownID
			return res, nil, nil
		}
		p, reason := q.statelessPrediction(spec, model, it, now)
		if reason != "" {
			return invalid("%s", reason)
		}
		preds, stateless = []prediction{p}, true
	}
	for _, p := range preds {
		if p.done {
			res.Result = ResultDuplicate
			return res, nil, nil
		}
	}
	if now > preds[0].expires {
		res.Result = ResultExpired
		return res, nil, nil
	}
	truths, reason := parseTruth(spec, &preds[0], it.Truth)
	if reason != "" {
		return invalid("%s", reason)
	}
	var rows []scored
	for i := range preds {
		p := &preds[i]
		p.done = true
		if err := w.putPred(p, stateless); err != nil {
			return res, nil, err
		}
		for r := range truths {
			e := event{at: now, task: p.task, model: model, version: p.version, truth: truths[r]}
			switch p.task {
			case TaskRegression:
				e.value = p.value[r]
			case TaskBinary:
				e.actual, e.pred, e.score = int32(truths[r]), p.pred[r], p.score[r]
			default:
				e.actual, e.pred = int32(truths[r]), p.pred[r]
			}
			if err := w.putEvent(&e, it.ID, r, now+int64(spec.Window)); err != nil {
				return res, nil, err
			}
			rows = append(rows, scored{e: e, classes: p.classes})
		}
		res.Versions = append(res.Versions, p.version)
	}
	res.Result = ResultMatched
	return res, rows, nil
}

// statelessPrediction builds the prediction an item carries; reason is
// set when it cannot be used.
func (q *Monitor) statelessPrediction(spec *Spec, model string, it *Item, now int64) (prediction, string) {
	p := prediction{model: model, version: it.Version, id: it.ID, task: spec.Task, at: now,
		expires: now + int64(spec.TTL)}
	p.deadline = p.expires + int64(expiredGrace(spec.TTL))
	switch {
	case it.Version == "" || it.Prediction == nil:
		return p, "the stateless path needs both model_version and prediction"
	case !slices.Contains(spec.Versions, it.Version):
		return p, fmt.Sprintf("model_version %q is not a version of the model", it.Version)
	case len(it.Prediction) != len(it.Truth):
		return p, fmt.Sprintf("prediction has %d rows, ground_truth %d", len(it.Prediction), len(it.Truth))
	}
	classes := int32(spec.Classes)
	if spec.Task == TaskBinary {
		classes = 2
	}
	p.classes = classes
	for r, v := range it.Prediction {
		switch spec.Task {
		case TaskRegression:
			if v.IsStr || !finite(v.Num) {
				return p, fmt.Sprintf("prediction[%d]: not a finite number", r)
			}
			p.value = append(p.value, v.Num)
		case TaskBinary:
			if v.IsStr || !finite(v.Num) {
				return p, fmt.Sprintf("prediction[%d]: a binary model's prediction is its positive-class score, a number", r)
			}
			c := int32(1 - spec.PositiveClass)
			if v.Num >= spec.Threshold {
				c = int32(spec.PositiveClass)
			}
			p.pred, p.score = append(p.pred, c), append(p.score, v.Num)
		default:
			if classes <= 0 {
				return p, "the model's class count is unknown (no labels file, no fixed output size); the stateless path cannot check the prediction"
			}
			c, err := spec.classIndex(v, classes)
			if err != nil {
				return p, fmt.Sprintf("prediction[%d]: %v", r, err)
			}
			p.pred = append(p.pred, c)
		}
	}
	return p, ""
}

// parseTruth checks ground truth against a prediction: one entry per row,
// each a class in the class set or a finite number (regression). It
// returns the truths as numbers (class indexes or values).
func parseTruth(spec *Spec, p *prediction, truth []Value) ([]float64, string) {
	rows := len(p.pred)
	if p.task == TaskRegression {
		rows = len(p.value)
	}
	if len(truth) != rows {
		return nil, fmt.Sprintf("ground_truth has %d rows, the prediction %d", len(truth), rows)
	}
	out := make([]float64, rows)
	for r, v := range truth {
		if p.task == TaskRegression {
			if v.IsStr || !finite(v.Num) {
				return nil, fmt.Sprintf("ground_truth[%d]: %s is not a finite number", r, describeValue(v))
			}
			out[r] = v.Num
			continue
		}
		c, err := spec.classIndex(v, p.classes)
		if err != nil {
			return nil, fmt.Sprintf("ground_truth[%d]: %v", r, err)
		}
		out[r] = float64(c)
	}
	return out, ""
}

func describeValue(v Value) string {
	if v.IsStr {
		return fmt.Sprintf("%q", v.Str)
	}
	return fmt.Sprint(v.Num)
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// count adds each item's result to onnxserve_feedback_total: per version
// scored for a match, else under the version the item names when the
// model has it ("" otherwise), so labels stay bounded.
func (q *Monitor) count(spec *Spec, model string, results []Result, items []Item) {
	for i, r := range results {
		if r.Result == ResultMatched {
			for _, v := range r.Versions {
				q.m.feedback.WithLabelValues(model, v, r.Result).Inc()
			}
			continue
		}
		v := ""
		if slices.Contains(spec.Versions, items[i].Version) {
			v = items[i].Version
		}
		q.m.feedback.WithLabelValues(model, v, r.Result).Inc()
	}
}

// score adds one labelled row to the quality counters.
func (q *Monitor) score(spec *Spec, s *scored) {
	e := &s.e
	switch e.task {
	case TaskRegression:
		d := e.value - e.truth
		q.m.absErr.WithLabelValues(e.model, e.version).Add(math.Abs(d))
		q.m.sqErr.WithLabelValues(e.model, e.version).Add(d * d)
		q.m.rows.WithLabelValues(e.model, e.version).Inc()
		return
	case TaskBinary:
		q.m.score.WithLabelValues(e.model, e.version, classLabel(spec, e.actual)).Observe(e.score)
	}
	q.m.labelled.WithLabelValues(e.model, e.version, classLabel(spec, e.actual), predictedLabel(spec, s.classes, e.actual, e.pred)).Inc()
}
