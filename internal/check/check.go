package check

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// DefaultLatencyRequests is how many requests a latency budget measures.
const DefaultLatencyRequests = 200

// latencyWarmup requests run before the measured ones.
const latencyWarmup = 10

// Config says what to check.
type Config struct {
	// Root is the model repository folder.
	Root string
	// Models are the models to check; empty checks every model.
	Models []string
	// LatencyRequests is how many requests of check.batch rows measure a
	// latency budget. [DefaultLatencyRequests]
	LatencyRequests int
}

// Case is one check of one model version: "config", "load", a golden
// test ("golden tests/NAME.json") or "latency".
type Case struct {
	Model   string
	Version string // "" for a check of the whole model
	Name    string
	// Failure says what went wrong; "" when the case passed.
	Failure string
	// Detail is extra text for a passed case (a measured latency).
	Detail   string
	Duration time.Duration
}

// Passed reports whether the case passed.
func (c Case) Passed() bool { return c.Failure == "" }

// Report is every case, in model, version and check order.
type Report struct {
	Cases []Case
}

// Failed counts the failed cases.
func (r Report) Failed() int {
	n := 0
	for _, c := range r.Cases {
		if !c.Passed() {
			n++
		}
	}
	return n
}

// Run checks the repository. It returns an error only when it cannot check
// at all (the repository folder cannot be read); every failure of a model
// is a failed Case. log receives the serving core's own logs.
func Run(ctx context.Context, l serving.Loader, cfg Config, log *zap.Logger) (Report, error) {
	if cfg.LatencyRequests <= 0 {
		cfg.LatencyRequests = DefaultLatencyRequests
	}
	snap, err := repository.Scan(cfg.Root)
	if err != nil {
		return Report{}, err
	}
	var rep Report
	add := func(c Case) { rep.Cases = append(rep.Cases, c) }
	var models []repository.Model
	if len(cfg.Models) == 0 {
		models = snap.Models
		for _, p := range snap.Problems {
			add(Case{Name: "repository", Failure: p.Error()})
		}
	} else {
		for _, name := range cfg.Models {
			m, ok := snap.Model(name)
			if !ok {
				add(Case{Model: name, Name: "config", Failure: fmt.Sprintf("model %q not found in %s", name, snap.Root)})
				continue
			}
			models = append(models, m)
		}
	}
	srv := serving.New(l, serving.Config{Root: snap.Root, Mode: serving.ModePoll}, log, nil, nil)
	defer func() {
		if err := srv.Close(context.Background()); err != nil {
			log.Warn("closing the serving core", zap.Error(err))
		}
	}()
	for _, m := range models {
		checkModel(ctx, srv, m, cfg, add)
	}
	return rep, nil
}

// checkModel loads one model as the server would and runs its checks.
func checkModel(ctx context.Context, srv *serving.Server, m repository.Model, cfg Config, add func(Case)) {
	cfgCase := Case{Model: m.Name, Name: "config"}
	switch {
	case m.Err != nil:
		cfgCase.Failure = "config.yaml: " + m.Err.Error()
	case len(m.Versions) == 0:
		cfgCase.Failure = "no version folders"
	case len(m.Selected) == 0 && len(m.Config.VersionPolicy.Select(versionNumbers(m))) == 0:
		cfgCase.Failure = "the version policy selects none of the version folders"
	}
	for _, p := range m.Problems {
		cfgCase.Detail += p.Error() + "; "
	}
	add(cfgCase)
	if !cfgCase.Passed() {
		return
	}
	start := time.Now()
	srv.Apply(ctx, []serving.Desired{serving.DesiredFromRepository(m)})
	loadTime := time.Since(start)
	for _, e := range srv.Index() {
		if e.Name != m.Name {
			continue
		}
		c := Case{Model: m.Name, Version: e.Version, Name: "load", Duration: loadTime}
		if e.State != serving.StateReady {
			c.Failure = fmt.Sprintf("%s: %s", e.State, e.Reason)
			add(c)
			continue
		}
		add(c)
		n, _ := strconv.ParseInt(e.Version, 10, 64)
		dir := versionDir(m, n)
		goldenCases(ctx, srv, m.Name, e.Version, dir, add)
		if m.Config.Check != nil {
			add(latencyCase(ctx, srv, m.Name, e.Version, m.Config, cfg.LatencyRequests))
		}
	}
}

func versionNumbers(m repository.Model) []int64 {
	out := make([]int64, len(m.Versions))
	for i, v := range m.Versions {
		out[i] = v.Number
	}
	return out
}

func versionDir(m repository.Model, n int64) string {
	return filepath.Join(m.Dir, strconv.FormatInt(n, 10))
}

// goldenCases runs every tests/*.json of a version through the server.
func goldenCases(ctx context.Context, srv *serving.Server, model, version, dir string, add func(Case)) {
	files, err := filepath.Glob(filepath.Join(dir, "tests", "*.json"))
	if err != nil {
		add(Case{Model: model, Version: version, Name: "golden", Failure: err.Error()})
		return
	}
	slices.Sort(files)
	for _, f := range files {
		c := Case{Model: model, Version: version, Name: "golden tests/" + filepath.Base(f)}
		start := time.Now()
		c.Failure = runGolden(ctx, srv, model, version, f)
		c.Duration = time.Since(start)
		add(c)
	}
}

func runGolden(ctx context.Context, srv *serving.Server, model, version, path string) string {
	g, in, want, err := readGolden(path)
	if err != nil {
		return err.Error()
	}
	req := &serving.Request{Model: model, Version: version, ID: "check", Inputs: in}
	for _, o := range g.Request.Outputs {
		req.Outputs = append(req.Outputs, o.Name)
	}
	resp, err := srv.Infer(ctx, req)
	if err != nil {
		return "inference failed: " + err.Error()
	}
	got := make(map[string]tensor.Tensor, len(resp.Outputs))
	for _, o := range resp.Outputs {
		got[o.Name] = o
	}
	return compare(got, want, g.Tolerance.Absolute, g.Tolerance.Relative)
}

// latencyCase measures requests of check.batch zero-valued rows, one at a
// time, and holds their 99th percentile to check.p99.
func latencyCase(ctx context.Context, srv *serving.Server, model, version string, cfg repository.Config, n int) Case {
	b := cfg.Check
	c := Case{Model: model, Version: version, Name: "latency"}
	md, err := srv.ModelMetadata(model, version)
	if err != nil {
		c.Failure = err.Error()
		return c
	}
	in, err := serving.ZeroInputs(md.Inputs, cfg.Warmup.Dims, nil, cfg.MaxBatchSize > 0, b.Batch)
	if err != nil {
		c.Failure = err.Error()
		return c
	}
	start := time.Now()
	times := make([]time.Duration, 0, n)
	for i := range latencyWarmup + n {
		t0 := time.Now()
		if _, err := srv.Infer(ctx, &serving.Request{Model: model, Version: version, ID: "check", Inputs: in}); err != nil {
			c.Failure = "inference failed: " + err.Error()
			return c
		}
		if i >= latencyWarmup {
			times = append(times, time.Since(t0))
		}
	}
	c.Duration = time.Since(start)
	p99 := percentile(times, 0.99)
	c.Detail = fmt.Sprintf("p99 %s over %d requests of batch %d (budget %s)", p99, n, b.Batch, b.P99)
	if p99 > b.P99 {
		c.Failure = "latency budget blown: " + c.Detail
	}
	return c
}

// percentile is the nearest-rank percentile q of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	k := int(float64(len(s))*q+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}
