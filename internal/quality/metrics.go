package quality

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// maxConfusionClasses is the class count up to which
// onnxserve_labelled_predictions_total keeps every (actual, predicted)
// pair; above it predicted is the actual class or "other".
const maxConfusionClasses = 32

// maxClassLabels bounds the distinct class label values of one model: a
// class beyond it is labelled "other".
const maxClassLabels = 1024

// otherClass is the label value classes collapse to.
const otherClass = "other"

// scoreBuckets are onnxserve_labelled_score's bounds: steps of 0.05 over
// the probability range.
var scoreBuckets = prometheus.LinearBuckets(0.05, 0.05, 20)

// metrics are the loop's collectors, registered on an injected registerer.
type metrics struct {
	feedback    *prometheus.CounterVec
	labelled    *prometheus.CounterVec
	predictions *prometheus.CounterVec
	score       *prometheus.HistogramVec
	absErr      *prometheus.CounterVec
	sqErr       *prometheus.CounterVec
	rows        *prometheus.CounterVec
	evicted     *prometheus.CounterVec
	storeErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, size func() float64) (*metrics, error) {
	mv := []string{"model", "version"}
	m := &metrics{
		feedback: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onnxserve_feedback_total",
			Help: "Ground-truth items received, by result: matched, unknown_id, expired, duplicate, invalid."}, append(mv, "result")),
		labelled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onnxserve_labelled_predictions_total",
			Help: "Labelled rows by actual and predicted class: the confusion matrix (above 32 classes predicted is the actual class or other)."}, append(mv, "actual", "predicted")),
		predictions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onnxserve_predictions_total",
			Help: "Answered rows of monitored classification models by predicted class, labelled or not."}, append(mv, "predicted")),
		score: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "onnxserve_labelled_score",
			Help: "Positive-class score of labelled rows of binary models, by actual class.", Buckets: scoreBuckets}, append(mv, "actual")),
		absErr: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onnxserve_labelled_abs_error_sum",
			Help: "Sum of absolute errors of labelled rows of regression models."}, mv),
		sqErr: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onnxserve_labelled_squared_error_sum",
			Help: "Sum of squared errors of labelled rows of regression models."}, mv),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onnxserve_labelled_rows_total",
			Help: "Labelled rows of regression models."}, mv),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onnxserve_prediction_store_evicted_total",
			Help: "Entries deleted from the prediction store: expired, or the oldest when over --state-max-bytes (size)."}, []string{"reason"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "onnxserve_prediction_store_errors_total",
			Help: "Failed writes to the prediction store (the predictions they held are lost)."}),
	}
	for _, c := range []prometheus.Collector{m.feedback, m.labelled, m.predictions, m.score, m.absErr, m.sqErr, m.rows, m.evicted, m.storeErrors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "onnxserve_prediction_store_bytes",
			Help: "Bytes of keys and values in the prediction store (bounded by --state-max-bytes)."}, size)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"expired", "size"} {
		m.evicted.WithLabelValues(r)
	}
	return m, nil
}

// classLabel is the label value of class c of spec's model.
func classLabel(spec *Spec, c int32) string {
	if c >= maxClassLabels {
		return otherClass
	}
	return spec.className(c)
}

// predictedLabel is the predicted label of a labelled row: the class
// itself up to maxConfusionClasses classes, else the actual class or
// "other", so a model with many classes keeps few series.
func predictedLabel(spec *Spec, classes, actual, pred int32) string {
	if classes > maxConfusionClasses {
		if pred == actual {
			return classLabel(spec, actual)
		}
		return otherClass
	}
	return classLabel(spec, pred)
}

func itoa(i int) string { return strconv.Itoa(i) }

// forget deletes every series of model and version.
func (m *metrics) forget(model, version string) {
	l := prometheus.Labels{"model": model, "version": version}
	m.feedback.DeletePartialMatch(l)
	m.labelled.DeletePartialMatch(l)
	m.predictions.DeletePartialMatch(l)
	m.score.DeletePartialMatch(l)
	m.absErr.DeletePartialMatch(l)
	m.sqErr.DeletePartialMatch(l)
	m.rows.DeletePartialMatch(l)
}
