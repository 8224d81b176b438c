package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the benchmark's settings, from flags.
type config struct {
	out, work                  string
	server, baseline           string
	baselineName               string
	ortbench                   string
	modelsDir, ocrModel        string
	cpu                        int
	reps                       int
	ocrRows, clsRows, textRows int
	rssRows                    []int
	rawDuration, rawWarmup     time.Duration
	// quiet is the load from other processes on the pinned CPU, in cores,
	// above which a repetition counts as disturbed; retryBudget bounds the
	// time spent running disturbed repetitions again.
	quiet       float64
	retryBudget time.Duration
	command     string
	keep        bool
	// only, when not empty, limits the run to the throughput comparisons
	// of these models, without the RSS part.
	only []string
}

func parseConfig(args []string) (*config, error) {
	c := &config{}
	var rss, only string
	var quick bool
	fs := flag.NewFlagSet("scorebench", flag.ContinueOnError)
	fs.StringVar(&c.out, "out", "bench/SCORE.md", "the report")
	fs.StringVar(&c.work, "work", ".cache/bench-score", "scratch folder: generated inputs, outputs, the OCR model's repository (emptied at the end unless --keep)")
	fs.StringVar(&c.server, "server", "bin/onnxserve", "onnxserve binary under test")
	fs.StringVar(&c.baseline, "baseline", "", "another onnxserve binary measured beside --server in every repetition (\"before\"); empty for none")
	fs.StringVar(&c.baselineName, "baseline-name", "", "what --baseline was built from, for the report (a commit)")
	fs.StringVar(&c.ortbench, "ortbench", ".cache/bin/ortbench", "cmd/ortbench binary, the raw ONNX Runtime baseline")
	fs.StringVar(&c.modelsDir, "models-dir", "models", "the bundled model repository (the classifier)")
	fs.StringVar(&c.ocrModel, "ocr-model", ".cache/bench-models/ocr_cls.onnx", "PaddleOCR direction classifier (make bench-models)")
	fs.IntVar(&c.cpu, "cpu", 1, "CPU every throughput run is pinned to")
	fs.IntVar(&c.reps, "reps", 5, "undisturbed repetitions wanted of every throughput comparison")
	fs.IntVar(&c.ocrRows, "ocr-rows", 5000, "rows of the OCR input (110,592 bytes each)")
	fs.IntVar(&c.clsRows, "classifier-rows", 1000000, "rows of the classifier's NPY input for throughput")
	fs.IntVar(&c.textRows, "text-rows", 100000, "rows of the classifier's CSV and JSON lines inputs for throughput")
	fs.StringVar(&rss, "rss-rows", "100000,1000000", "file sizes, in rows, whose peak RSS is compared")
	fs.DurationVar(&c.rawDuration, "raw-duration", time.Second, "measured time of each raw baseline run")
	fs.DurationVar(&c.rawWarmup, "raw-warmup", 300*time.Millisecond, "unmeasured runs before each raw baseline run")
	fs.Float64Var(&c.quiet, "quiet-cores", 0.1, "other processes' use of the pinned CPU, in cores, above which a repetition counts as disturbed and is run again")
	fs.DurationVar(&c.retryBudget, "retry-budget", time.Minute, "time the benchmark may spend running disturbed repetitions again")
	fs.StringVar(&c.command, "command", "", "the command that started the benchmark, for the report (default: this program's command line)")
	fs.BoolVar(&c.keep, "keep", false, "keep the generated inputs and outputs in --work")
	fs.BoolVar(&quick, "quick", false, "sanity run: one repetition, small files")
	fs.StringVar(&only, "only", "", "comma-separated models (ocr_cls, classifier) whose throughput alone is measured, without the RSS part; for a quick look, not a report")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if quick {
		c.reps, c.ocrRows, c.clsRows, c.textRows, rss, c.rawDuration = 1, 200, 100000, 20000, "20000,100000", 300*time.Millisecond
	}
	for _, m := range strings.Split(only, ",") {
		if m = strings.TrimSpace(m); m != "" {
			c.only = append(c.only, m)
		}
	}
	for _, f := range strings.Split(rss, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--rss-rows: %q is not a list of positive integers", rss)
		}
		c.rssRows = append(c.rssRows, n)
	}
	if c.reps < 1 || c.ocrRows < 2*ocrBatch || c.clsRows < 2*clsBatchLarge || c.textRows < 2*clsBatch || c.rawDuration <= 0 || c.cpu < 0 {
		return nil, fmt.Errorf("--reps must be >= 1, --raw-duration > 0, --cpu >= 0, and the files at least two of their largest batches (%d OCR, %d classifier, %d text rows)",
			2*ocrBatch, 2*clsBatchLarge, 2*clsBatch)
	}
	if c.command == "" {
		c.command = strings.Join(append([]string{".cache/bin/scorebench"}, args...), " ")
	}
	return c, nil
}

func main() {
	c, err := parseConfig(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "scorebench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "scorebench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scorebench %s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// checkPrograms fails early, naming what is missing.
func (c *config) checkPrograms() error {
	if _, err := exec.LookPath("taskset"); err != nil {
		return errors.New("taskset (util-linux) is needed to pin the runs to one CPU")
	}
	files := []string{c.server, c.ortbench, c.ocrModel, filepath.Join(c.modelsDir, "classifier", "config.yaml")}
	if c.baseline != "" {
		files = append(files, c.baseline)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.IsDir() {
			return fmt.Errorf("%s not found; `make bench-score` builds and fetches what it needs", f)
		}
	}
	return nil
}

func run(ctx context.Context, c *config) error {
	if err := c.checkPrograms(); err != nil {
		return err
	}
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	dataDir, err := os.MkdirTemp(c.work, "run-")
	if err != nil {
		return err
	}
	if !c.keep {
		defer os.RemoveAll(dataDir)
	}
	e := &env{cfg: c, dir: dataDir, hz: clockTicks()}
	res := &results{Date: time.Now().UTC().Format("2006-01-02"), CPUModel: cpuModel(), CPUs: onlineCPUs(), Command: c.command,
		PinnedCPU: c.cpu, Baseline: c.baseline != "", BaselineName: c.baselineName, Quiet: c.quiet}
	cases, err := e.prepare(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(c.retryBudget)
	for _, tc := range cases {
		logf("throughput: %s", tc.title())
		m, err := e.measureCase(ctx, tc, deadline)
		if err != nil {
			return fmt.Errorf("%s: %w", tc.title(), err)
		}
		res.Throughput = append(res.Throughput, m)
		if res.ORTVersion == "" {
			res.ORTVersion = m.ORTVersion
		}
	}
	for _, rc := range e.rssCases() {
		logf("peak RSS: %s", rc.title())
		m, err := e.measureRSS(ctx, rc)
		if err != nil {
			return fmt.Errorf("%s: %w", rc.title(), err)
		}
		res.RSS = append(res.RSS, m)
	}
	if err := os.WriteFile(c.out, []byte(render(res)), 0o644); err != nil {
		return err
	}
	logf("wrote %s", c.out)
	return nil
}
