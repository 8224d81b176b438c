package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The batch sizes compared. ocrBatch is where the OCR classifier runs
// fastest per row on one thread (bench/RESULTS.md: raw ONNX Runtime is
// flat from 1 to 16 and slower at 256, its activations leaving the cache);
// clsBatch is score's default; clsBatchLarge is the classifier at a batch
// where ONNX Runtime's per-run overhead is gone.
const (
	ocrBatch      = 16
	clsBatch      = 256
	clsBatchLarge = 4096
)

// tcase is one throughput comparison: score on a file against the raw
// baseline on the same model at the same batch size.
type tcase struct {
	Model    string // model name in Repo
	Repo     string
	ONNX     string // the model file, for ortbench
	Dims     string // ortbench --dims, for inputs the model leaves open
	Batch    int
	In, Out  string // file formats (extensions)
	Rows     int
	RowBytes int    // input bytes a row, as the model takes them
	Headline bool   // the comparison the target is judged on
	Why      string // why this comparison, for the report
}

func (t tcase) title() string {
	return fmt.Sprintf("%s, batch %d, %s → %s, %d rows", t.Model, t.Batch, t.In, t.Out, t.Rows)
}

// rcase is one peak-RSS comparison: score with its defaults on files of
// each size of --rss-rows.
type rcase struct {
	In, Out string
}

func (r rcase) title() string { return fmt.Sprintf("classifier, %s → %s", r.In, r.Out) }

// procRun is one measured process.
type procRun struct {
	Wall float64 // seconds
	CPU  float64 // its own user + system CPU seconds
	// Others is the CPU other processes used on the pinned CPU during
	// the run, in cores (0 for runs not pinned).
	Others float64
	MaxRSS int64   // peak resident set, KiB (ru_maxrss)
	Rate   float64 // what the program reported: ortbench items/s, score's summary rows/s
	// CPURate is ortbench's items per CPU-second in its measured window
	// (its cpu_us_per_item); 0 for score, whose CPU rate is marginal.
	CPURate float64
}

// rep is one repetition of a throughput comparison, its runs back to back.
type rep struct {
	Raw, Small, Full    procRun
	BaseSmall, BaseFull procRun // zero without a baseline
	Disturbed           bool
}

// caseResult is a throughput comparison's repetitions.
type caseResult struct {
	Case       tcase
	ORTVersion string
	Reps       []rep
	// Identical says whether the baseline wrote the same output bytes;
	// nil without a baseline.
	Identical *bool
}

// rssResult is a peak-RSS comparison: one peak per size of --rss-rows.
type rssResult struct {
	Case      rcase
	Rows      []int
	Peak      []int64 // KiB
	BasePeak  []int64 // KiB; nil without a baseline
	Identical *bool
}

// env holds what the measurements share: settings, the data folder and
// the generated files.
type env struct {
	cfg   *config
	dir   string
	hz    float64
	files map[string]string
	ocr   string // the OCR model's repository
}

// prepare builds the OCR model's repository and every input file, and
// returns the throughput comparisons.
func (e *env) prepare(ctx context.Context) ([]tcase, error) {
	c := e.cfg
	e.files = map[string]string{}
	e.ocr = filepath.Join(e.dir, "repo")
	if err := os.MkdirAll(filepath.Join(e.ocr, "ocr_cls", "1"), 0o755); err != nil {
		return nil, err
	}
	// The server's suite serves it with max_batch_size 16 too; score
	// stacks --batch-size rows whatever the config says, and the warmup
	// needs the image size the model leaves open.
	if err := os.WriteFile(filepath.Join(e.ocr, "ocr_cls", "config.yaml"), []byte("max_batch_size: 16\nwarmup:\n  dims: {x: [3, 48, 192]}\n"), 0o644); err != nil {
		return nil, err
	}
	if err := copyFile(c.ocrModel, filepath.Join(e.ocr, "ocr_cls", "1", "model.onnx")); err != nil {
		return nil, err
	}
	clsONNX := filepath.Join(c.modelsDir, "classifier", "1", "model.onnx")
	cases := []tcase{
		{Model: "ocr_cls", Repo: e.ocr, ONNX: c.ocrModel, Dims: "x=3x48x192", Batch: ocrBatch, In: "npy", Out: "jsonl", Rows: c.ocrRows, RowBytes: 3 * 48 * 192 * 4, Headline: true,
			Why: "a real CNN (PaddleOCR's text-direction classifier, 110,592 input bytes a row): its run dominates, as when scoring a real model"},
		{Model: "classifier", Repo: c.modelsDir, ONNX: clsONNX, Batch: clsBatch, In: "npy", Out: "npy", Rows: c.clsRows,
			Why: "the bundled MLP, almost free to run: binary in and out, what is left is score itself"},
		{Model: "classifier", Repo: c.modelsDir, ONNX: clsONNX, Batch: clsBatch, In: "npy", Out: "jsonl", Rows: c.clsRows,
			Why: "as above, writing JSON lines (ten floats a row as text)"},
		{Model: "classifier", Repo: c.modelsDir, ONNX: clsONNX, Batch: clsBatch, In: "csv", Out: "csv", Rows: c.textRows,
			Why: "as above, text both ways (64 numbers parsed, ten written a row)"},
		{Model: "classifier", Repo: c.modelsDir, ONNX: clsONNX, Batch: clsBatch, In: "jsonl", Out: "jsonl", Rows: c.textRows,
			Why: "as above, JSON lines both ways (`{\"INPUT\": [64 numbers]}` a line)"},
		{Model: "classifier", Repo: c.modelsDir, ONNX: clsONNX, Batch: clsBatchLarge, In: "npy", Out: "npy", Rows: c.clsRows,
			Why: "the classifier at a large batch, where ONNX Runtime's cost per run is spread thinnest"},
	}
	if len(c.only) > 0 {
		cases = slices.DeleteFunc(cases, func(tc tcase) bool { return !slices.Contains(c.only, tc.Model) })
	}
	for _, tc := range cases {
		for _, rows := range []int{tc.Rows, tc.Batch} {
			if _, err := e.input(ctx, tc.Model, tc.In, rows); err != nil {
				return nil, err
			}
		}
	}
	for _, rc := range e.rssCases() {
		for _, rows := range c.rssRows {
			if _, err := e.input(ctx, "classifier", rc.In, rows); err != nil {
				return nil, err
			}
		}
	}
	return cases, nil
}

// rssCases are the formats whose peak RSS is compared: each output from
// NPY, and CSV in and out; none with --only.
func (e *env) rssCases() []rcase {
	if len(e.cfg.only) > 0 {
		return nil
	}
	return []rcase{{"npy", "jsonl"}, {"npy", "csv"}, {"npy", "npy"}, {"npy", "parquet"}, {"csv", "csv"}}
}

// input returns the generated input of model in format ext with rows
// rows, writing it the first time.
func (e *env) input(ctx context.Context, model, ext string, rows int) (string, error) {
	key := fmt.Sprintf("%s-%d.%s", model, rows, ext)
	if p, ok := e.files[key]; ok {
		return p, nil
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	p := filepath.Join(e.dir, key)
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	switch {
	case model == "ocr_cls":
		err = writeNPY(w, rows, []int{3, 48, 192}, unitValues(1))
	case ext == "npy":
		err = writeNPY(w, rows, []int{64}, featureValues(1))
	case ext == "jsonl":
		err = writeJSONL(w, rows, 64, featureValues(1))
	default:
		err = writeCSV(w, rows, 64, featureValues(1))
	}
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", p, err)
	}
	logf("generated %s", p)
	e.files[key] = p
	return p, nil
}

// measureCase runs a throughput comparison until it has cfg.reps
// undisturbed repetitions, or runs out of attempts (three times the
// repetitions) or of the retry budget.
func (e *env) measureCase(ctx context.Context, tc tcase, deadline time.Time) (caseResult, error) {
	res := caseResult{Case: tc}
	full, err := e.input(ctx, tc.Model, tc.In, tc.Rows)
	if err != nil {
		return res, err
	}
	small, err := e.input(ctx, tc.Model, tc.In, tc.Batch)
	if err != nil {
		return res, err
	}
	clean := 0
	for attempt := 0; clean < e.cfg.reps && attempt < 3*e.cfg.reps; attempt++ {
		if attempt >= e.cfg.reps && time.Now().After(deadline) {
			break
		}
		e.waitQuiet(ctx)
		var r rep
		var version string
		raw1, version, err := e.runRaw(ctx, tc)
		if err != nil {
			return res, err
		}
		res.ORTVersion = version
		out := filepath.Join(e.dir, "out."+tc.Out)
		baseOut := filepath.Join(e.dir, "base-out."+tc.Out)
		// After and before take turns going first, so a machine getting
		// busier or quieter within a repetition favours neither.
		type scoreRun struct {
			bin, out    string
			small, full *procRun
		}
		runs := []scoreRun{{e.cfg.server, out, &r.Small, &r.Full}}
		if e.cfg.baseline != "" {
			base := scoreRun{e.cfg.baseline, baseOut, &r.BaseSmall, &r.BaseFull}
			if attempt%2 == 1 {
				runs = []scoreRun{base, runs[0]}
			} else {
				runs = append(runs, base)
			}
		}
		for _, sr := range runs {
			if *sr.small, err = e.runScore(ctx, sr.bin, tc, small, sr.out, true); err != nil {
				return res, err
			}
			if *sr.full, err = e.runScore(ctx, sr.bin, tc, full, sr.out, true); err != nil {
				return res, err
			}
		}
		if e.cfg.baseline != "" && res.Identical == nil {
			same, err := sameFiles(out, baseOut)
			if err != nil {
				return res, err
			}
			res.Identical = &same
		}
		// The raw baseline runs again at the end: its two runs bracket
		// score's, and their mean is the repetition's raw rate.
		raw2, _, err := e.runRaw(ctx, tc)
		if err != nil {
			return res, err
		}
		r.Raw = procRun{Rate: (raw1.Rate + raw2.Rate) / 2, CPURate: (raw1.CPURate + raw2.CPURate) / 2,
			Others: max(raw1.Others, raw2.Others), Wall: raw1.Wall + raw2.Wall, CPU: raw1.CPU + raw2.CPU}
		r.Disturbed = r.disturbed(e.cfg.quiet)
		if !r.Disturbed {
			clean++
		}
		logf("  raw %.0f/s, score %.0f/s (%.0f/s end to end)%s", r.Raw.Rate, r.scoreRate(tc), float64(tc.Rows)/r.Full.Wall, disturbedNote(r))
		res.Reps = append(res.Reps, r)
	}
	return res, nil
}

func disturbedNote(r rep) string {
	if !r.Disturbed {
		return ""
	}
	return fmt.Sprintf(" — disturbed (others used %.2f cores of the CPU)", r.maxOthers())
}

// waitQuiet waits, up to five seconds, for other processes to leave the
// pinned CPU below the quiet threshold, so a repetition starts on a quiet
// CPU when there is one.
func (e *env) waitQuiet(ctx context.Context) {
	const window = 250 * time.Millisecond
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		b0, err := cpuBusy(e.cfg.cpu)
		if err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(window):
		}
		b1, err := cpuBusy(e.cfg.cpu)
		if err != nil || float64(b1-b0)/e.hz/window.Seconds() <= e.cfg.quiet {
			return
		}
	}
}

// runRaw runs the raw baseline pinned, at the case's batch size.
func (e *env) runRaw(ctx context.Context, tc tcase) (procRun, string, error) {
	args := []string{"--model", tc.ONNX, "--batch-sizes", strconv.Itoa(tc.Batch), "--intra-op-threads", "1",
		"--warmup", e.cfg.rawWarmup.String(), "--duration", e.cfg.rawDuration.String()}
	if tc.Dims != "" {
		args = append(args, "--dims", tc.Dims)
	}
	pr, out, err := e.exec(ctx, true, e.cfg.ortbench, args...)
	if err != nil {
		return pr, "", err
	}
	var doc struct {
		ORTVersion string `json:"ort_version"`
		Points     []struct {
			ItemsPerSec      float64 `json:"items_per_sec"`
			CPUMicrosPerItem float64 `json:"cpu_us_per_item"`
		} `json:"points"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || len(doc.Points) != 1 {
		return pr, "", fmt.Errorf("ortbench printed %q: %v", out, err)
	}
	pr.Rate = doc.Points[0].ItemsPerSec
	if cpu := doc.Points[0].CPUMicrosPerItem; cpu > 0 {
		pr.CPURate = 1e6 / cpu
	}
	return pr, doc.ORTVersion, nil
}

// runScore scores in into out with bin, pinned with one worker (pin) or
// with score's defaults.
func (e *env) runScore(ctx context.Context, bin string, tc tcase, in, out string, pin bool) (procRun, error) {
	args := []string{"score", "--model-repository", tc.Repo, "--model", tc.Model, "--version", "1",
		"--input", in, "--output", out, "--overwrite", "--progress", "none"}
	if tc.Batch > 0 {
		args = append(args, "--batch-size", strconv.Itoa(tc.Batch))
	}
	if pin {
		args = append(args, "--workers", "1")
	}
	pr, stdout, err := e.exec(ctx, pin, bin, args...)
	if err != nil {
		return pr, err
	}
	if pr.Rate, err = summaryRate(stdout); err != nil {
		return pr, err
	}
	return pr, nil
}

// measureRSS scores each size of the case's input with score's defaults
// (and the baseline's) and keeps the peak RSS of each run.
func (e *env) measureRSS(ctx context.Context, rc rcase) (rssResult, error) {
	res := rssResult{Case: rc, Rows: e.cfg.rssRows}
	tc := tcase{Model: "classifier", Repo: e.cfg.modelsDir}
	for _, rows := range e.cfg.rssRows {
		in, err := e.input(ctx, "classifier", rc.In, rows)
		if err != nil {
			return res, err
		}
		out := filepath.Join(e.dir, "rss-out."+rc.Out)
		pr, err := e.runScore(ctx, e.cfg.server, tc, in, out, false)
		if err != nil {
			return res, err
		}
		res.Peak = append(res.Peak, pr.MaxRSS)
		logf("  %d rows: peak RSS %.1f MiB", rows, float64(pr.MaxRSS)/1024)
		if e.cfg.baseline == "" {
			continue
		}
		baseOut := filepath.Join(e.dir, "rss-base-out."+rc.Out)
		bpr, err := e.runScore(ctx, e.cfg.baseline, tc, in, baseOut, false)
		if err != nil {
			return res, err
		}
		res.BasePeak = append(res.BasePeak, bpr.MaxRSS)
		same, err := sameFiles(out, baseOut)
		if err != nil {
			return res, err
		}
		if res.Identical == nil || !same {
			res.Identical = &same
		}
	}
	return res, nil
}

// exec runs a program to completion (pinned to cfg.cpu when pin) and
// measures it: wall time, its own CPU time and peak RSS from wait4, and
// the other processes' use of the pinned CPU from /proc/stat.
func (e *env) exec(ctx context.Context, pin bool, name string, args ...string) (procRun, []byte, error) {
	var pr procRun
	if pin {
		args = append([]string{"-c", strconv.Itoa(e.cfg.cpu), name}, args...)
		name = "taskset"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	busy0, _ := cpuBusy(e.cfg.cpu)
	start := time.Now()
	err := cmd.Run()
	pr.Wall = time.Since(start).Seconds()
	busy1, statErr := cpuBusy(e.cfg.cpu)
	if err != nil {
		return pr, nil, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(stderr.Bytes()))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		pr.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		pr.MaxRSS = ru.Maxrss
	}
	if pin && statErr == nil && pr.Wall > 0 {
		pr.Others = max((float64(busy1-busy0)/e.hz-pr.CPU)/pr.Wall, 0)
	}
	return pr, stdout.Bytes(), nil
}

// scoreRate is score's marginal rate: the rows beyond one batch over the
// time beyond the one-batch run's, which leaves out process start, model
// load and warmup.
func (r rep) scoreRate(tc tcase) float64 { return marginal(tc, r.Small, r.Full) }

// baseRate is the baseline's marginal rate.
func (r rep) baseRate(tc tcase) float64 { return marginal(tc, r.BaseSmall, r.BaseFull) }

func marginal(tc tcase, small, full procRun) float64 {
	if d := full.Wall - small.Wall; d > 0 {
		return float64(tc.Rows-tc.Batch) / d
	}
	return 0
}

// scoreCPURate is score's marginal rate in CPU time: rows beyond one
// batch per CPU-second beyond the one-batch run's. Time other processes
// take from the CPU does not count in it, so it compares with ortbench's
// CPU rate even in a disturbed repetition.
func (r rep) scoreCPURate(tc tcase) float64 {
	if d := r.Full.CPU - r.Small.CPU; d > 0 {
		return float64(tc.Rows-tc.Batch) / d
	}
	return 0
}

func (r rep) maxOthers() float64 {
	return max(r.Raw.Others, r.Small.Others, r.Full.Others, r.BaseSmall.Others, r.BaseFull.Others)
}

func (r rep) disturbed(quiet float64) bool { return r.maxOthers() > quiet }

// summaryRe matches score's summary line.
var summaryRe = regexp.MustCompile(`: (\d+) rows, (\d+) errors, (\d+) rows/s,`)

// summaryRate reads the rows/s of score's summary line.
func summaryRate(stdout []byte) (float64, error) {
	m := summaryRe.FindSubmatch(stdout)
	if m == nil {
		return 0, fmt.Errorf("no summary line in %q", tail(stdout))
	}
	if m[2][0] != '0' || len(m[2]) > 1 {
		return 0, fmt.Errorf("score reported bad rows: %q", tail(stdout))
	}
	return strconv.ParseFloat(string(m[3]), 64)
}

// cpuBusy is the busy time of one CPU from /proc/stat, in clock ticks:
// user, nice, system, irq, softirq and steal (the hypervisor running
// something else when the CPU wanted to run).
func cpuBusy(cpu int) (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseCPUBusy(b, cpu)
}

func parseCPUBusy(stat []byte, cpu int) (uint64, error) {
	prefix := "cpu" + strconv.Itoa(cpu) + " "
	for line := range strings.Lines(string(stat)) {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 9 {
			break
		}
		var busy uint64
		for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return 0, err
			}
			busy += v
		}
		return busy, nil
	}
	return 0, fmt.Errorf("/proc/stat has no line for CPU %d", cpu)
}

// clockTicks is USER_HZ, the unit of /proc/stat: 100 on every Linux
// architecture this runs on (getconf CLK_TCK), read when getconf is there.
func clockTicks() float64 {
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}

// cpuModel is lscpu's model name, from /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "an unknown CPU"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "an unknown CPU"
}

// onlineCPUs counts the CPUs this process may run on (nproc).
func onlineCPUs() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

func sameFiles(a, b string) (bool, error) {
	ha, err := fileHash(a)
	if err != nil {
		return false, err
	}
	hb, err := fileHash(b)
	if err != nil {
		return false, err
	}
	return ha == hb, nil
}

func fileHash(p string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(p)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// median of the values; 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
