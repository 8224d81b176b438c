package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/onnxserve/onnxserve/internal/quality"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// maxLabelsBytes bounds a labels file.
const maxLabelsBytes = 4 << 20

// qualitySpecs turns a model's monitoring block into the quality loop's
// Spec: the block's fields, the labels file read from the model folder,
// the class count, and the model's versions. Labels are re-read only when
// the monitoring block changes. Safe for concurrent use.
type qualitySpecs struct {
	srv  *serving.Server
	root string

	mu     sync.Mutex
	labels map[string]cachedLabels // by model
}

type cachedLabels struct {
	block  repository.Monitoring
	labels []string
	err    error
}

func newQualitySpecs(srv *serving.Server, root string) *qualitySpecs {
	return &qualitySpecs{srv: srv, root: root, labels: map[string]cachedLabels{}}
}

// resolve is a quality.Resolver.
func (q *qualitySpecs) resolve(model string) (quality.Spec, error) {
	cfg, err := q.srv.ModelConfig(model)
	if err != nil {
		return quality.Spec{}, err
	}
	mon := cfg.Monitoring
	if mon == nil {
		return quality.Spec{}, quality.ErrNotMonitored
	}
	task, _ := quality.ParseTask(mon.Task)
	spec := quality.Spec{Task: task, Output: mon.Output, PositiveClass: mon.PositiveClass, Threshold: mon.Threshold,
		Sample: mon.Sample, TTL: mon.FeedbackTTL, Window: mon.Window}
	if mon.Labels != "" {
		if spec.Labels, err = q.readLabels(model, *mon); err != nil {
			return quality.Spec{}, fmt.Errorf("model %q: monitoring.labels: %w", model, err)
		}
	}
	spec.Classes = len(spec.Labels)
	if md, err := q.srv.ModelMetadata(model, ""); err == nil {
		spec.Versions = md.Versions
		if spec.Classes == 0 && task == quality.TaskClassification {
			spec.Classes = outputClasses(md.Outputs, mon.Output)
		}
	}
	for _, e := range q.srv.Index() {
		if e.Name == model && !slices.Contains(spec.Versions, e.Version) && e.State == serving.StateReady {
			spec.Versions = append(spec.Versions, e.Version)
		}
	}
	return spec, nil
}

// outputClasses is the fixed last dimension of the output read, 0 when it
// is dynamic.
func outputClasses(outs []tensor.Spec, name string) int {
	for _, o := range outs {
		if (name == "" && len(outs) == 1) || o.Name == name {
			if n := len(o.Shape); n >= 2 && o.Shape[n-1] > 0 {
				return int(o.Shape[n-1])
			}
		}
	}
	return 0
}

// readLabels returns the labels file's class names, one a line (blank
// trailing lines aside), cached while the monitoring block is unchanged.
func (q *qualitySpecs) readLabels(model string, mon repository.Monitoring) ([]string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if c, ok := q.labels[model]; ok && c.block == mon {
		return c.labels, c.err
	}
	labels, err := readLabelsFile(filepath.Join(q.root, model, mon.Labels))
	q.labels[model] = cachedLabels{block: mon, labels: labels, err: err}
	return labels, err
}

func readLabelsFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > maxLabelsBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxLabelsBytes)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxLabelsBytes)
	for sc.Scan() {
		out = append(out, strings.TrimSpace(sc.Text()))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no labels", path)
	}
	return out, nil
}
