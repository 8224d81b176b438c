package quality

import (
	"fmt"
	"slices"
	"time"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Task is what a model predicts, which decides how its answers are read
// and scored.
type Task uint8

// The tasks of a monitoring block.
const (
	// TaskClassification: one score per class; the predicted class of a
	// row is its argmax.
	TaskClassification Task = iota + 1
	// TaskBinary: two classes; the positive class is predicted for a
	// positive-class score at or above the threshold.
	TaskBinary
	// TaskRegression: one predicted value per row.
	TaskRegression
)

// ParseTask returns the Task a monitoring block names.
func ParseTask(s string) (Task, bool) {
	switch s {
	case "classification":
		return TaskClassification, true
	case "binary":
		return TaskBinary, true
	case "regression":
		return TaskRegression, true
	}
	return 0, false
}

func (t Task) String() string {
	switch t {
	case TaskClassification:
		return "classification"
	case TaskBinary:
		return "binary"
	case TaskRegression:
		return "regression"
	}
	return "unknown"
}

// ErrNotMonitored: the model's config.yaml has no monitoring block, so it
// takes no feedback and has no quality report. It is a client error.
var ErrNotMonitored = tensor.Invalidf("the model's config.yaml has no monitoring block")

// Spec is how the loop reads one model: its monitoring block with the
// labels file read, and what the serving core knows of it. A plain value,
// safe for concurrent reads.
type Spec struct {
	Task Task
	// Output names the output read; "" means the model's only output.
	Output string
	// Labels are the class names, index i naming class i; nil for none.
	Labels []string
	// Classes is the class count when known before a prediction
	// (len(Labels), else the output's fixed last dimension); 0 otherwise,
	// when each prediction's output shape says it.
	Classes int
	// PositiveClass (0 or 1) and Threshold are a binary model's.
	PositiveClass int
	Threshold     float64
	// Sample is the share of answered requests kept, 0..1.
	Sample float64
	// TTL is how long a prediction waits for its ground truth; Window the
	// report's default sliding window.
	TTL, Window time.Duration
	// Versions are the versions the model has now; feedback on the
	// stateless path must name one of them.
	Versions []string
}

// Resolver returns the Spec of a model, or an error wrapping
// serving.ErrModelNotFound for a model the server does not have, or
// ErrNotMonitored. It is called on the request path at most about once a
// second per model (the result is cached), so it must be quick and safe
// for concurrent use.
type Resolver func(model string) (Spec, error)

// specRefresh is how long a resolved Spec is used before it is resolved
// again, so a changed config.yaml takes effect within about a second.
const specRefresh = time.Second

// resolved is a cached Resolver answer.
type resolved struct {
	spec Spec
	err  error
	at   time.Time
}

// className is the label value and report name of class c.
func (s *Spec) className(c int32) string {
	if int(c) < len(s.Labels) && c >= 0 {
		return s.Labels[c]
	}
	return itoa(int(c))
}

// classIndex returns the class a label names: an index in 0..classes-1,
// or a name from the labels file.
func (s *Spec) classIndex(v Value, classes int32) (int32, error) {
	if v.IsStr {
		if i := slices.Index(s.Labels, v.Str); i >= 0 {
			return int32(i), nil
		}
		if len(s.Labels) == 0 {
			return 0, fmt.Errorf("label %q: the model has no labels file; send a class index", v.Str)
		}
		return 0, fmt.Errorf("label %q is not a class of the labels file", v.Str)
	}
	if v.Num != float64(int64(v.Num)) {
		return 0, fmt.Errorf("class %v is not an integer index", v.Num)
	}
	if v.Num < 0 || (classes > 0 && v.Num >= float64(classes)) {
		return 0, fmt.Errorf("class %v is outside the class set 0..%d", v.Num, classes-1)
	}
	return int32(v.Num), nil
}
