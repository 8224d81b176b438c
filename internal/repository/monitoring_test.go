package repository

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseMonitoring(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want *Monitoring
		err  string // substring of the error; "" for success
	}{
		{name: "absent", yaml: "max_batch_size: 4\n", want: nil},
		{name: "defaults", yaml: "monitoring:\n  task: classification\n", want: &Monitoring{
			Task: TaskClassification, PositiveClass: 1, Threshold: 0.5, Sample: 1, FeedbackTTL: 72 * time.Hour, Window: time.Hour}},
		{name: "every field", yaml: "monitoring:\n  task: binary\n  output: prob\n  labels: labels.txt\n  positive_class: 0\n  threshold: 0.7\n  sample: 0.25\n  feedback_ttl: 2h\n  window: 10m\n",
			want: &Monitoring{Task: TaskBinary, Output: "prob", Labels: "labels.txt", PositiveClass: 0, Threshold: 0.7, Sample: 0.25, FeedbackTTL: 2 * time.Hour, Window: 10 * time.Minute}},
		{name: "integer sample", yaml: "monitoring: {task: regression, sample: 1}\n", want: &Monitoring{
			Task: TaskRegression, PositiveClass: 1, Threshold: 0.5, Sample: 1, FeedbackTTL: 72 * time.Hour, Window: time.Hour}},
		{name: "task missing", yaml: "monitoring:\n  sample: 0.5\n", err: "monitoring.task: required"},
		{name: "task unknown", yaml: "monitoring: {task: ranking}\n", err: `monitoring.task: must be one of classification, binary, regression, got "ranking"`},
		{name: "unknown field", yaml: "monitoring: {task: binary, thresold: 0.3}\n", err: "monitoring.thresold: unknown field (line 1)"},
		{name: "sample range", yaml: "monitoring:\n  task: binary\n  sample: 1.5\n", err: "monitoring.sample: must be in 0..1, got 1.5 (line 3)"},
		{name: "sample type", yaml: "monitoring: {task: binary, sample: half}\n", err: `monitoring.sample: must be a number, got string "half"`},
		{name: "ttl unit", yaml: "monitoring: {task: binary, feedback_ttl: 72}\n", err: "monitoring.feedback_ttl: must be a duration with a unit"},
		{name: "ttl zero", yaml: "monitoring: {task: binary, feedback_ttl: 0s}\n", err: "monitoring.feedback_ttl: must be in (0s, 8784h0m0s], got 0s"},
		{name: "window", yaml: "monitoring: {task: binary, window: -1m}\n", err: "monitoring.window: must be in"},
		{name: "labels path", yaml: "monitoring: {task: classification, labels: ../secrets}\n", err: `monitoring.labels: must be a file name in the model folder`},
		{name: "positive class", yaml: "monitoring: {task: binary, positive_class: 2}\n", err: "monitoring.positive_class: must be 0 or 1, got 2"},
		{name: "threshold off task", yaml: "monitoring:\n  task: classification\n  threshold: 0.3\n", err: "monitoring.threshold: applies to task binary only, not classification (line 3)"},
		{name: "not a mapping", yaml: "monitoring: [1]\n", err: "monitoring: must be a mapping, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.yaml))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("err = %v, want one containing %q wrapping ErrInvalidConfig", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.want == nil && cfg.Monitoring != nil:
				t.Fatalf("monitoring = %+v, want none", *cfg.Monitoring)
			case tt.want != nil && (cfg.Monitoring == nil || *cfg.Monitoring != *tt.want):
				t.Fatalf("monitoring = %+v, want %+v", cfg.Monitoring, *tt.want)
			}
			if c := cfg.Clone(); tt.want != nil && c.Monitoring == cfg.Monitoring {
				t.Error("Clone shares the monitoring block")
			}
		})
	}
}
