package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// model is one benchmarked model: served twice, with dynamic batching as
// configured (name) and with it off (naive), from one model file.
type model struct {
	name  string
	naive string
	// file is the ONNX model; version is the folder it is served from,
	// which the metrics label.
	file    string
	version string
	// config is config.yaml with dynamic batching on, as a YAML mapping.
	config   map[string]any
	maxBatch int
	// dispatch is dynamic_batching.dispatch: immediate (the default) or
	// wait.
	dispatch string
	// queueDelay is dynamic_batching.max_queue_delay.
	queueDelay time.Duration
	// rawSizes are the batch sizes the raw baseline measures; dims gives
	// ortbench the non-batch dimensions the model leaves open.
	rawSizes []int
	dims     string
	// drift, when not "", names a third copy served with drift monitoring
	// and validation on (driftConfig), from the version's profile.json.
	drift   string
	profile string
	// quality, when not "", names a fourth copy served with the model-quality
	// loop on (qualityConfig): the bundled monitoring block, every answer
	// kept, labels read from labels (a file copied beside it). The other
	// copies are served without monitoring, so quality's cost shows only in
	// the quality copy.
	quality    string
	monitoring map[string]any
	labels     string
}

// driftConcurrency is where the drift copy is measured beside the plain one.
const driftConcurrency = 128

// driftConfig is config with every row monitored for drift and NaN and
// range validation counting (the cost the drift section reports).
func (m *model) driftConfig() map[string]any {
	c := make(map[string]any, len(m.config)+2)
	for k, v := range m.config {
		c[k] = v
	}
	c["drift"] = map[string]any{"sample": 1.0}
	c["validation"] = map[string]any{"nan": "count", "inf": "count", "range": "profile", "range_action": "count"}
	return c
}

// qualityConcurrency is where the quality copy is measured beside the
// plain one.
const qualityConcurrency = 128

// qualityPairs is how many off/on pairs of the quality copy each
// repetition measures.
const qualityPairs = 6

// qualityConfig is config with the model's bundled monitoring block and
// every answer kept in the prediction store (the cost the quality section
// reports).
func (m *model) qualityConfig() map[string]any {
	c := make(map[string]any, len(m.config)+1)
	for k, v := range m.config {
		c[k] = v
	}
	mon := make(map[string]any, len(m.monitoring)+1)
	for k, v := range m.monitoring {
		mon[k] = v
	}
	mon["sample"] = 1.0
	c["monitoring"] = mon
	return c
}

// ocrConfig serves PaddleOCR's direction classifier. The server measures
// the model at batch sizes 1 to 16 while it loads and caps batches at the
// fastest per item (preferred_batch_sizes: auto), which on some CPUs is
// not the largest. Its image dimensions are open in the model, so
// warmup.dims gives the measurement the suite's 48x192 images. Dispatch
// is the default, immediate: an idle instance never waits.
const ocrConfig = `max_batch_size: 16
dynamic_batching:
  preferred_batch_sizes: auto
  max_queue_size: 1024
  default_timeout: 10s
warmup:
  dims: {x: [3, 48, 192]}
`

// loadModels describes the suite's models: the bundled ones read from
// bundled (the repository's models/ folder) and the OCR classifier at
// ocrFile. names picks and orders them.
func loadModels(bundled, ocrFile string, names []string) ([]*model, error) {
	var out []*model
	for _, n := range names {
		var m *model
		var err error
		switch n {
		case "simple", "classifier":
			m, err = bundledModel(bundled, n)
		case "ocr_cls":
			m, err = ocrModel(ocrFile)
		default:
			err = fmt.Errorf("unknown model %q: want simple, classifier or ocr_cls", n)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// bundledModel reads models/<name>: its config.yaml and its newest version.
func bundledModel(root, name string) (*model, error) {
	dir := filepath.Join(root, name)
	b, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s/config.yaml: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	newest := -1
	for _, e := range entries {
		if v, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() && v > newest {
			newest = v
		}
	}
	if newest < 0 {
		return nil, fmt.Errorf("%s: no version folder", dir)
	}
	m := &model{name: name, naive: name + "_nobatch", version: strconv.Itoa(newest), config: cfg}
	if mon, ok := cfg["monitoring"].(map[string]any); ok {
		// Only the quality copy monitors: the plain, naive and drift copies
		// are compared with their own variants and must not pay for it.
		delete(cfg, "monitoring")
		m.quality, m.monitoring = name+"_quality", mon
		if l, ok := mon["labels"].(string); ok && l != "" {
			m.labels = filepath.Join(dir, l)
		}
	}
	m.file = filepath.Join(dir, m.version, "model.onnx")
	if err := m.readConfig(); err != nil {
		return nil, fmt.Errorf("%s/config.yaml: %w", dir, err)
	}
	// Fixed shapes: the server may warm the model up before it is ready.
	cfg["warmup"] = map[string]any{"batch_sizes": []int{1, m.maxBatch}}
	for s := 1; s < m.maxBatch; s *= 2 {
		m.rawSizes = append(m.rawSizes, s)
	}
	m.rawSizes = append(m.rawSizes, m.maxBatch)
	if p := filepath.Join(dir, m.version, "profile.json"); fileExists(p) {
		m.drift, m.profile = name+"_drift", p
	}
	return m, nil
}

func ocrModel(file string) (*model, error) {
	if _, err := os.Stat(file); err != nil {
		return nil, fmt.Errorf("%w (run scripts/fetch-bench-models.sh)", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(ocrConfig), &cfg); err != nil {
		return nil, err
	}
	m := &model{name: "ocr_cls", naive: "ocr_cls_nobatch", file: file, version: "1", config: cfg,
		rawSizes: []int{1, 2, 4, 8, 16}, dims: "x=3x48x192"}
	return m, m.readConfig()
}

// readConfig fills maxBatch and queueDelay from config and pins the model
// to one execution instance with one intra-op thread, so the server uses
// exactly the one core it is given, as the raw baseline does.
func (m *model) readConfig() error {
	mb, ok := m.config["max_batch_size"].(int)
	if !ok || mb < 1 {
		return fmt.Errorf("max_batch_size %v: the suite needs a batching model", m.config["max_batch_size"])
	}
	m.maxBatch = mb
	db, ok := m.config["dynamic_batching"].(map[string]any)
	if !ok {
		return fmt.Errorf("no dynamic_batching block")
	}
	m.queueDelay = 500 * time.Microsecond // the server's default
	m.dispatch = "immediate"
	if s, ok := db["dispatch"].(string); ok {
		m.dispatch = s
	}
	if s, ok := db["max_queue_delay"].(string); ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("max_queue_delay: %w", err)
		}
		m.queueDelay = d
	}
	m.config["instances"] = map[string]any{"count": 1, "intra_op_threads": 1}
	return nil
}

// naiveConfig is config without dynamic batching: every request runs alone.
func (m *model) naiveConfig() map[string]any {
	c := make(map[string]any, len(m.config))
	for k, v := range m.config {
		if k != "dynamic_batching" {
			c[k] = v
		}
	}
	return c
}

// writeRepository creates dir afresh with both variants of every model.
func writeRepository(dir string, models []*model) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for _, m := range models {
		for _, v := range []struct {
			name string
			cfg  map[string]any
		}{{m.name, m.config}, {m.naive, m.naiveConfig()}, {m.drift, m.driftConfig()}, {m.quality, m.qualityConfig()}} {
			if v.name == "" {
				continue
			}
			vdir := filepath.Join(dir, v.name, m.version)
			if err := os.MkdirAll(vdir, 0o755); err != nil {
				return err
			}
			b, err := yaml.Marshal(v.cfg)
			if err != nil {
				return err
			}
			b = append([]byte("# Written by bench/run for one benchmark run; see bench/RESULTS.md.\n"), b...)
			if err := os.WriteFile(filepath.Join(dir, v.name, "config.yaml"), b, 0o644); err != nil {
				return err
			}
			if err := copyFile(m.file, filepath.Join(vdir, "model.onnx")); err != nil {
				return err
			}
			if v.name == m.drift {
				if err := copyFile(m.profile, filepath.Join(vdir, "profile.json")); err != nil {
					return err
				}
			}
			if v.name == m.quality && m.labels != "" {
				if err := copyFile(m.labels, filepath.Join(dir, v.name, filepath.Base(m.labels))); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// servedNames lists every model name the repository serves.
func servedNames(models []*model) []string {
	var out []string
	for _, m := range models {
		out = append(out, m.name, m.naive)
		for _, v := range []string{m.drift, m.quality} {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	return slices.Clip(out)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
