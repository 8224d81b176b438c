package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// pointKey names one measured point. Raw points have a Batch, closed-loop
// points a Concurrency, open-loop points a Rate (and Concurrency 0).
type pointKey struct {
	Model       string  `json:"model"`
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency,omitempty"`
	Batch       int     `json:"batch,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
}

// point is every repetition of one point and their median.
type point struct {
	pointKey
	Samples []sample `json:"samples"`
	// Median is taken over the repetitions that other processes left
	// undisturbed, or over all of them when none was (Disturbed); errors
	// are counted over all of them.
	Median    sample `json:"median"`
	Used      int    `json:"used"`
	Disturbed bool   `json:"disturbed,omitempty"`
	// MinThroughput and MaxThroughput span the repetitions the median used.
	MinThroughput float64 `json:"min_throughput"`
	MaxThroughput float64 `json:"max_throughput"`
}

// meta describes the run for the report.
type meta struct {
	Date       string `json:"date"`
	Commit     string `json:"commit"`
	Command    string `json:"command"`
	CPUModel   string `json:"cpu_model"`
	NumCPU     int    `json:"nproc"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
	ORTVersion string `json:"ort_version"`
	Reps       int    `json:"reps"`
	Warmup     string `json:"warmup"`
	Duration   string `json:"duration"`
	ServerCPU  int    `json:"server_cpu"`
	ClientCPU  int    `json:"client_cpu"`
	Quick      bool   `json:"quick"`
	Elapsed    string `json:"elapsed"`
	// Retried counts windows measured again because other processes
	// disturbed them.
	Retried    int     `json:"retried"`
	QuietCores float64 `json:"quiet_cores"`
	// What was run, so a report can be written again from results.json.
	Models              []string `json:"models"`
	Modes               []string `json:"modes"`
	Concurrency         []int    `json:"concurrency"`
	BatchingConcurrency []int    `json:"batching_concurrency"`
	// ServerArgs are the extra server flags of --server-args.
	ServerArgs []string `json:"server_args,omitempty"`
}

// results collects the suite's points in the order they were first
// measured. It is used by one goroutine.
type results struct {
	Meta        meta               `json:"meta"`
	Points      []*point           `json:"points"`
	HalfRate    map[string]float64 `json:"half_rate"`
	GhzCommands map[string]string  `json:"ghz_commands"`
	// Costs break the server's CPU per inference down by kind of work.
	Costs []costProfile `json:"costs,omitempty"`
	// BatchSizes is, by model, the server's own batch size measurement
	// of a model served with an auto batch size.
	BatchSizes map[string]batchSizes `json:"batch_sizes,omitempty"`
	// SequenceCheck is the streaming row's correctness check.
	SequenceCheck *sequenceCheck `json:"sequence_check,omitempty"`

	cfg    *config
	models []*model
	index  map[pointKey]*point
}

func newResults(c *config, models []*model) *results {
	r := &results{
		Meta: meta{
			Date:       time.Now().UTC().Format("2006-01-02 15:04 MST"),
			Commit:     gitCommit(),
			Command:    c.command,
			ServerArgs: c.serverArgs,
			CPUModel:   cpuModel(),
			NumCPU:     runtime.NumCPU(),
			Kernel:     kernel(),
			GoVersion:  runtime.Version(),
			Reps:       c.reps,
			Warmup:     c.warmup.String(),
			Duration:   c.duration.String(),
			ServerCPU:  c.serverCPU,
			ClientCPU:  c.clientCPU,
			Quick:      c.quick,
			QuietCores: c.quietCores,

			Models:              modelList(c),
			Modes:               c.modes,
			Concurrency:         c.concurrency,
			BatchingConcurrency: c.batchingConcurrency,
		},
		HalfRate:    map[string]float64{},
		GhzCommands: map[string]string{},
		BatchSizes:  map[string]batchSizes{},
		cfg:         c,
		models:      models,
		index:       map[pointKey]*point{},
	}
	if c.vad {
		r.SequenceCheck = &sequenceCheck{}
	}
	return r
}

func (r *results) add(k pointKey, s sample) {
	p := r.index[k]
	if p == nil {
		p = &point{pointKey: k}
		r.index[k] = p
		r.Points = append(r.Points, p)
	}
	p.Samples = append(p.Samples, s)
	var quiet []sample
	for _, x := range p.Samples {
		if x.OtherCores <= r.Meta.QuietCores {
			quiet = append(quiet, x)
		}
	}
	p.Disturbed = len(quiet) == 0
	if p.Disturbed {
		quiet = p.Samples
	}
	p.Used = len(quiet)
	p.Median = median(quiet)
	p.MinThroughput, p.MaxThroughput = quiet[0].Throughput, quiet[0].Throughput
	for _, x := range quiet {
		p.MinThroughput = min(p.MinThroughput, x.Throughput)
		p.MaxThroughput = max(p.MaxThroughput, x.Throughput)
	}
	p.Median.Errors, p.Median.ErrorSamples, p.Median.LateSends, p.Median.TapDropped = 0, nil, 0, 0
	for _, x := range p.Samples {
		p.Median.Errors += x.Errors
		p.Median.LateSends += x.LateSends
		p.Median.TapDropped += x.TapDropped
		for k, n := range x.ErrorSamples {
			if p.Median.ErrorSamples == nil {
				p.Median.ErrorSamples = map[string]int64{}
			}
			p.Median.ErrorSamples[k] += n
		}
	}
}

// get returns the median of a point, and whether it was measured.
func (r *results) get(k pointKey) (sample, bool) {
	p := r.index[k]
	if p == nil {
		return sample{}, false
	}
	return p.Median, true
}

// openLoop returns the open-loop point of model, if any.
func (r *results) openLoop(model string) (*point, bool) {
	for _, p := range r.Points {
		if p.Model == model && p.Rate > 0 {
			return p, true
		}
	}
	return nil, false
}

// peak returns the highest median closed-loop throughput of a model and
// mode.
func (r *results) peak(model, mode string) float64 {
	best := 0.0
	for _, p := range r.Points {
		if p.Model == model && p.Mode == mode && p.Rate == 0 {
			best = max(best, p.Median.Throughput)
		}
	}
	return best
}

// median takes each figure's median over the repetitions on its own; the
// errors and tap drops are summed, so none is hidden, and the batch distribution is the
// one of the repetition with the median throughput.
func median(ss []sample) sample {
	if len(ss) == 0 {
		return sample{}
	}
	med := func(f func(sample) float64) float64 { return medianOf(ss, f) }
	out := sample{
		Throughput:     med(func(s sample) float64 { return s.Throughput }),
		MeanMs:         med(func(s sample) float64 { return s.MeanMs }),
		P50Ms:          med(func(s sample) float64 { return s.P50Ms }),
		P90Ms:          med(func(s sample) float64 { return s.P90Ms }),
		P99Ms:          med(func(s sample) float64 { return s.P99Ms }),
		Seconds:        med(func(s sample) float64 { return s.Seconds }),
		ServerCPUPer1k: med(func(s sample) float64 { return s.ServerCPUPer1k }),
		ServerCores:    med(func(s sample) float64 { return s.ServerCores }),
		MeanBatch:      med(func(s sample) float64 { return s.MeanBatch }),
		ComputeMs:      med(func(s sample) float64 { return s.ComputeMs }),
		ServerP50Ms:    med(func(s sample) float64 { return s.ServerP50Ms }),
		ServerP99Ms:    med(func(s sample) float64 { return s.ServerP99Ms }),
		QueueP99Ms:     med(func(s sample) float64 { return s.QueueP99Ms }),
		ClientCores:    med(func(s sample) float64 { return s.ClientCores }),
		OtherCores:     med(func(s sample) float64 { return s.OtherCores }),
		Requests:       int64(med(func(s sample) float64 { return float64(s.Requests) })),
		Predictions:    med(func(s sample) float64 { return s.Predictions }),
		StoreBytes:     med(func(s sample) float64 { return s.StoreBytes }),
	}
	byThroughput := slices.Clone(ss)
	sort.SliceStable(byThroughput, func(i, j int) bool { return byThroughput[i].Throughput < byThroughput[j].Throughput })
	out.Batches = byThroughput[(len(ss)-1)/2].Batches
	for _, s := range ss {
		out.Errors += s.Errors
		out.LateSends += s.LateSends
		out.TapDropped += s.TapDropped
		for k, n := range s.ErrorSamples {
			if out.ErrorSamples == nil {
				out.ErrorSamples = map[string]int64{}
			}
			out.ErrorSamples[k] += n
		}
	}
	return out
}

// plannedPoints counts the load-generator windows of one repetition.
func (r *results) plannedPoints(models []*model) int {
	c := r.cfg
	n := 0
	for _, m := range models {
		n += len(c.modes) * len(c.concurrency)
		if batchingModel(m.name) {
			for _, mode := range []string{modeNaive, modeGRPC} {
				for _, conc := range c.batchingConcurrency {
					if !slices.Contains(c.concurrency, conc) || !slices.Contains(c.modes, mode) {
						n++
					}
				}
			}
		}
		if m.name == "simple" && c.ghzBin != "" {
			n += len(c.concurrency)
		}
		if m.drift != "" && slices.Contains(c.modes, modeGRPC) {
			n++
		}
		if m.quality != "" {
			n += 2
		}
	}
	if c.vad {
		n += len(vadVariants)
	}
	return n
}

// modelList is --models as given: the stateless models, then the
// streaming row's name when it runs.
func modelList(c *config) []string {
	if c.vad {
		return append(slices.Clone(c.models), vadModel)
	}
	return c.models
}

// estimate is the suite's expected length.
func (r *results) estimate(models []*model) time.Duration {
	c := r.cfg
	perPoint := c.warmup + c.duration + 200*time.Millisecond
	total := time.Duration(r.plannedPoints(models)*c.reps) * perPoint
	if c.vad {
		// The raw baseline runs every chunk at each batch size, at about
		// 7,000 chunks a second at batch size 1 and faster beyond.
		total += time.Duration(c.reps) * (time.Duration(len(vadRawSizes))*c.rawWarmup + time.Duration(c.vadSequences*c.vadChunks)*300*time.Microsecond)
	}
	for _, m := range models {
		total += time.Duration(len(m.rawSizes)*c.reps)*(c.rawWarmup+c.rawDuration) + time.Duration(c.reps)*300*time.Millisecond
		if batchingModel(m.name) {
			total += time.Duration(c.reps) * perPoint
		}
	}
	return total
}

// rewrite loads a results.json written by an earlier run and writes its
// report again into c.out, with the medians recomputed by the current
// rules: for changes to the report without measuring again.
func rewrite(c *config, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var saved results
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	mt := saved.Meta
	if len(mt.Models) == 0 || len(mt.Concurrency) == 0 {
		return fmt.Errorf("%s does not say what was run; measure again", path)
	}
	c.models, c.vad = splitModels(mt.Models)
	c.modes, c.concurrency, c.batchingConcurrency = mt.Modes, mt.Concurrency, mt.BatchingConcurrency
	if c.warmup, err = time.ParseDuration(mt.Warmup); err != nil {
		return err
	}
	if c.duration, err = time.ParseDuration(mt.Duration); err != nil {
		return err
	}
	models, err := loadModels(c.bundled, c.ocrFile, c.models)
	if err != nil {
		return err
	}
	r := &results{Meta: mt, HalfRate: saved.HalfRate, GhzCommands: saved.GhzCommands, BatchSizes: saved.BatchSizes,
		SequenceCheck: saved.SequenceCheck, cfg: c, models: models, index: map[pointKey]*point{}}
	for _, p := range saved.Points {
		for _, s := range p.Samples {
			r.add(p.pointKey, s)
		}
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	return r.write(c.out)
}

func (r *results) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	plots, err := r.plot(dir)
	if err != nil {
		return err
	}
	md := r.markdown(plots)
	path := filepath.Join(dir, "RESULTS.md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return err
	}
	n := 0
	for _, ps := range plots {
		n += len(ps)
	}
	logf("wrote %s, results.json and %d plots", path, n)
	return nil
}

// gitCommit returns HEAD, marked when the working tree differs from it.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		commit += " with uncommitted changes"
	}
	return commit
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return "Linux " + strings.TrimSpace(string(b))
}
