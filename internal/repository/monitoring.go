package repository

import (
	"fmt"
	"math"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The tasks accepted in monitoring.task.
const (
	// TaskClassification: the output holds one score per class; the
	// predicted class of a row is its argmax.
	TaskClassification = "classification"
	// TaskBinary: two classes, predicted by comparing the positive-class
	// score with monitoring.threshold.
	TaskBinary = "binary"
	// TaskRegression: the output holds one predicted value per row.
	TaskRegression = "regression"
)

// Defaults and limits of the monitoring block.
const (
	// DefaultPositiveClass is the positive class index of a binary model.
	DefaultPositiveClass = 1
	// DefaultThreshold is the positive-class score at or above which a
	// binary model predicts the positive class.
	DefaultThreshold = 0.5
	// DefaultSample is the share of answered requests kept for joining.
	DefaultSample = 1.0
	// DefaultFeedbackTTL is how long a prediction waits for its ground
	// truth.
	DefaultFeedbackTTL = 72 * time.Hour
	// DefaultQualityWindow is the quality report's sliding window.
	DefaultQualityWindow = time.Hour
	// MaxFeedbackTTL bounds feedback_ttl: a longer wait is a typo.
	MaxFeedbackTTL = 366 * 24 * time.Hour
	// MaxQualityWindow bounds window, which the report keeps in memory.
	MaxQualityWindow = 31 * 24 * time.Hour
)

// Monitoring is the monitoring block: how the model-quality loop reads a
// model's answers and how long it keeps them. Fields absent from a present
// block take the Default* constants above. A plain value, safe for
// concurrent reads.
type Monitoring struct {
	// Task is TaskClassification, TaskBinary or TaskRegression; required.
	Task string `yaml:"task"`
	// Output names the output holding class scores or the predicted
	// value; "" means the model's only output.
	Output string `yaml:"output,omitempty"`
	// Labels names a file in the model folder with one class name per
	// line, line i naming class i; "" for none.
	Labels string `yaml:"labels,omitempty"`
	// PositiveClass is the positive class index of a binary model, 0 or 1.
	// [DefaultPositiveClass]
	PositiveClass int `yaml:"positive_class"`
	// Threshold: a binary model predicts the positive class for a score at
	// or above it. [DefaultThreshold], finite.
	Threshold float64 `yaml:"threshold"`
	// Sample is the share of answered requests kept for joining, 0..1.
	// [DefaultSample]
	Sample float64 `yaml:"sample"`
	// FeedbackTTL is how long a prediction waits for its ground truth.
	// [DefaultFeedbackTTL], in (0, MaxFeedbackTTL].
	FeedbackTTL time.Duration `yaml:"feedback_ttl"`
	// Window is the quality report's sliding window.
	// [DefaultQualityWindow], in (0, MaxQualityWindow].
	Window time.Duration `yaml:"window"`
}

func defaultMonitoring() Monitoring {
	return Monitoring{
		PositiveClass: DefaultPositiveClass,
		Threshold:     DefaultThreshold,
		Sample:        DefaultSample,
		FeedbackTTL:   DefaultFeedbackTTL,
		Window:        DefaultQualityWindow,
	}
}

func (m *Monitoring) validate(ch *checker) {
	switch m.Task {
	case TaskClassification, TaskBinary, TaskRegression:
	case "":
		ch.addf("monitoring.task", "required: one of %s, %s, %s", TaskClassification, TaskBinary, TaskRegression)
	default:
		ch.addf("monitoring.task", "must be one of %s, %s, %s, got %q", TaskClassification, TaskBinary, TaskRegression, m.Task)
	}
	if m.Labels != "" && !plainFileName(m.Labels) {
		ch.addf("monitoring.labels", "must be a file name in the model folder (no path separators), got %q", m.Labels)
	}
	if m.PositiveClass != 0 && m.PositiveClass != 1 {
		ch.addf("monitoring.positive_class", "must be 0 or 1, got %d", m.PositiveClass)
	}
	if math.IsNaN(m.Threshold) || math.IsInf(m.Threshold, 0) {
		ch.addf("monitoring.threshold", "must be a finite number, got %v", m.Threshold)
	}
	if !(m.Sample >= 0 && m.Sample <= 1) {
		ch.addf("monitoring.sample", "must be in 0..1, got %v", m.Sample)
	}
	if m.FeedbackTTL <= 0 || m.FeedbackTTL > MaxFeedbackTTL {
		ch.addf("monitoring.feedback_ttl", "must be in (0s, %s], got %s", MaxFeedbackTTL, m.FeedbackTTL)
	}
	if m.Window <= 0 || m.Window > MaxQualityWindow {
		ch.addf("monitoring.window", "must be in (0s, %s], got %s", MaxQualityWindow, m.Window)
	}
}

// plainFileName reports whether name is a file name without a directory.
func plainFileName(name string) bool {
	return name != "." && name != ".." && len(name) <= 255 && !strings.ContainsAny(name, "/\\\x00")
}

// monitoring decodes the monitoring block; fields only a binary model
// uses are errors for another task, so a misplaced one is not ignored.
func (p *parser) monitoring(n *yaml.Node, path string, m *Monitoring) {
	seen := p.mapping(n, path, fields{
		"task":           func(v *yaml.Node, path string) { p.stringField(v, path, &m.Task) },
		"output":         func(v *yaml.Node, path string) { p.stringField(v, path, &m.Output) },
		"labels":         func(v *yaml.Node, path string) { p.stringField(v, path, &m.Labels) },
		"positive_class": func(v *yaml.Node, path string) { p.intField(v, path, &m.PositiveClass) },
		"threshold":      func(v *yaml.Node, path string) { p.floatField(v, path, &m.Threshold) },
		"sample":         func(v *yaml.Node, path string) { p.floatField(v, path, &m.Sample) },
		"feedback_ttl":   func(v *yaml.Node, path string) { p.durationField(v, path, &m.FeedbackTTL) },
		"window":         func(v *yaml.Node, path string) { p.durationField(v, path, &m.Window) },
	})
	if m.Task == TaskBinary || m.Task == "" {
		return
	}
	for _, k := range []string{"positive_class", "threshold"} {
		if seen[k] {
			p.ch.errs = append(p.ch.errs, &FieldError{Field: joinPath(path, k), Line: p.ch.lines[joinPath(path, k)],
				Msg: fmt.Sprintf("applies to task %s only, not %s", TaskBinary, m.Task)})
		}
	}
}
