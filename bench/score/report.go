package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// results is everything one benchmark run measured; a plain value.
type results struct {
	Date, CPUModel string
	CPUs           int
	Command        string
	PinnedCPU      int
	Baseline       bool
	BaselineName   string
	ORTVersion     string
	Quiet          float64
	Throughput     []caseResult
	RSS            []rssResult
}

// targetRatio is the target: score at least this share of raw
// ONNX Runtime's rate on the headline model.
const targetRatio = 0.95

// summary is a throughput comparison's medians over the repetitions used.
type summary struct {
	Raw, Score, E2E, Ratio float64
	// MinRatio and MaxRatio are the lowest and highest repetition's.
	MinRatio, MaxRatio float64
	// CPURatio is score's marginal rows per CPU-second over ortbench's.
	CPURatio                 float64
	Base, BaseE2E, BaseRatio float64
	// Own is score's own cost a row, µs: its time a row less raw ONNX
	// Runtime's.
	Own         float64
	Used, Total int
}

// summarize takes the medians over the undisturbed repetitions, or over
// all of them when every one was disturbed.
func summarize(cr caseResult) summary {
	var used []rep
	for _, r := range cr.Reps {
		if !r.Disturbed {
			used = append(used, r)
		}
	}
	if len(used) == 0 {
		used = cr.Reps
	}
	var raw, score, e2e, ratio, cpuRatio, base, baseE2E, baseRatio []float64
	for _, r := range used {
		s := r.scoreRate(cr.Case)
		raw = append(raw, r.Raw.Rate)
		score = append(score, s)
		e2e = append(e2e, float64(cr.Case.Rows)/r.Full.Wall)
		if r.Raw.Rate > 0 {
			ratio = append(ratio, s/r.Raw.Rate)
		}
		if r.Raw.CPURate > 0 {
			cpuRatio = append(cpuRatio, r.scoreCPURate(cr.Case)/r.Raw.CPURate)
		}
		if r.BaseFull.Wall > 0 {
			b := r.baseRate(cr.Case)
			base = append(base, b)
			baseE2E = append(baseE2E, float64(cr.Case.Rows)/r.BaseFull.Wall)
			if r.Raw.Rate > 0 {
				baseRatio = append(baseRatio, b/r.Raw.Rate)
			}
		}
	}
	s := summary{Raw: median(raw), Score: median(score), E2E: median(e2e), Ratio: median(ratio), CPURatio: median(cpuRatio),
		Base: median(base), BaseE2E: median(baseE2E), BaseRatio: median(baseRatio), Used: len(used), Total: len(cr.Reps)}
	if s.Score > 0 && s.Raw > 0 {
		s.Own = 1e6/s.Score - 1e6/s.Raw
	}
	if len(ratio) > 0 {
		s.MinRatio, s.MaxRatio = slices.Min(ratio), slices.Max(ratio)
	}
	return s
}

// rssFlat says whether peak RSS stayed flat from the smallest file to the
// largest: at most 8 MiB or 10% more, whichever is larger.
func rssFlat(peaks []int64) bool {
	if len(peaks) < 2 {
		return true
	}
	first, last := peaks[0], peaks[len(peaks)-1]
	return last-first <= max(8<<10, first/10)
}

func render(r *results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# `onnxserve score` against raw ONNX Runtime, and its peak memory\n\n")
	w("Recorded %s on %s, %d CPUs available to the process (`lscpu` model name, `nproc`), ONNX Runtime %s, with:\n\n", r.Date, r.CPUModel, r.CPUs, r.ORTVersion)
	w("```\n%s\n```\n\n", r.Command)
	if r.Baseline {
		name := r.BaselineName
		if name == "" {
			name = "another build"
		}
		w("*Before* is `onnxserve` built from %s, measured in the same repetitions as *after* (this checkout), each run right after the other.\n\n", name)
	}
	w("The machine is shared with other work: compare the columns of one run rather than runs on different days. ")
	w("A repetition during which other processes used more than %.2f of a core on CPU %d is disturbed and run again; medians leave disturbed ones out (*reps*: used of run).\n\n", r.Quiet, r.PinnedCPU)

	w("## Throughput: score against raw ONNX Runtime\n\n")
	w("Both pinned to CPU %d (`taskset`) with one ONNX Runtime thread: `onnxserve score --workers 1 --batch-size B` and `ortbench --intra-op-threads 1 --batch-sizes B` on the same model file, so score has exactly the CPU raw ONNX Runtime has and all of its own work (reading, parsing, batching, encoding, writing, checkpoints) shows. ", r.PinnedCPU)
	w("Each repetition runs back to back: ortbench, score on a file of one batch, score on the whole file")
	if r.Baseline {
		w(", the same two with *before* (after and before take turns going first)")
	}
	w(", and ortbench again; the mean of the two ortbench runs is the repetition's raw rate. **score rows/s** is the marginal rate, (rows − one batch) ÷ (wall time − the one-batch run's wall time): what a row costs once the process is up and the model loaded and warmed up. ")
	w("**end to end** is rows ÷ the whole process's wall time, what a user waits for on a file this size. **own µs/row** is score's time a row less raw ONNX Runtime's. ")
	w("**÷ raw, CPU** compares CPU time a row instead (score's marginal CPU time from rusage, ortbench's `cpu_us_per_item`): time other processes take from the CPU does not count in it.\n\n")
	w("| model | batch | input → output | rows | raw ORT rows/s | score rows/s | score ÷ raw (range) | ÷ raw, CPU | end to end rows/s | own µs/row |")
	if r.Baseline {
		w(" before rows/s | before ÷ raw | after ÷ before | output as before |")
	}
	w(" reps |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	if r.Baseline {
		w("---:|---:|---:|---|")
	}
	w("---:|\n")
	var headline *caseResult
	for i, cr := range r.Throughput {
		s := summarize(cr)
		c := cr.Case
		name := c.Model
		if c.Headline {
			name = "**" + name + "**"
			headline = &r.Throughput[i]
		}
		w("| %s | %d | %s → %s | %s | %s | %s | %s | %s | %s | %.2f |", name, c.Batch, c.In, c.Out, thousands(float64(c.Rows)),
			thousands(s.Raw), thousands(s.Score), pct(s.Ratio)+" ("+pctRange(s.MinRatio, s.MaxRatio)+")", pct(s.CPURatio), thousands(s.E2E), s.Own)
		if r.Baseline {
			w(" %s | %s | %.2f× | %s |", thousands(s.Base), pct(s.BaseRatio), ratioOf(s.Score, s.Base), yesNo(cr.Identical))
		}
		w(" %d of %d |\n", s.Used, s.Total)
	}
	w("\n")
	for _, cr := range r.Throughput {
		w("- %s at batch %d, %s → %s: %s.\n", cr.Case.Model, cr.Case.Batch, cr.Case.In, cr.Case.Out, cr.Case.Why)
	}
	w("\n")
	if headline != nil {
		s := summarize(*headline)
		verdict := "**met**"
		if s.Ratio < targetRatio {
			verdict = "**not met**"
		}
		w("**Target**: score ≥ %s of raw ONNX Runtime's throughput on %s at batch %d: %s (in CPU time %s) — %s.\n\n",
			pct(targetRatio), headline.Case.Model, headline.Case.Batch, pct(s.Ratio), pct(s.CPURatio), verdict)
	}

	w("### Repetitions\n\n")
	w("*others*: the most CPU other processes used on CPU %d during any run of the repetition, in cores.\n\n", r.PinnedCPU)
	w("| model | batch | input → output | rep | raw ORT rows/s | score rows/s | score ÷ raw | ÷ raw, CPU | end to end rows/s |")
	if r.Baseline {
		w(" before rows/s | before end to end |")
	}
	w(" others | used |\n|---|---:|---|---:|---:|---:|---:|---:|---:|")
	if r.Baseline {
		w("---:|---:|")
	}
	w("---:|---|\n")
	for _, cr := range r.Throughput {
		c := cr.Case
		for i, rp := range cr.Reps {
			s := rp.scoreRate(c)
			w("| %s | %d | %s → %s | %d | %s | %s | %s | %s | %s |", c.Model, c.Batch, c.In, c.Out, i+1, thousands(rp.Raw.Rate), thousands(s),
				pct(s/rp.Raw.Rate), pct(rp.scoreCPURate(c)/rp.Raw.CPURate), thousands(float64(c.Rows)/rp.Full.Wall))
			if r.Baseline {
				w(" %s | %s |", thousands(rp.baseRate(c)), thousands(float64(c.Rows)/rp.BaseFull.Wall))
			}
			used := "yes"
			if rp.Disturbed {
				used = "no (disturbed)"
			}
			w(" %.2f | %s |\n", rp.maxOthers(), used)
		}
	}
	w("\n")

	w("## Peak RSS against file size\n\n")
	w("`onnxserve score` with its defaults (`--workers auto`: every CPU, one ONNX Runtime thread each; `--batch-size auto`: 256; chunks of 65,536 rows) on the bundled classifier, not pinned. ")
	w("Peak RSS is the kernel's high-water mark of the process's resident set (wait4's `ru_maxrss`, what `VmHWM` and `/usr/bin/time -v` report). ")
	w("*Flat*: the largest file's peak at most 8 MiB or 10%% above the smallest's, whichever is more.\n\n")
	w("| input → output |")
	var sizes []int
	if len(r.RSS) > 0 {
		sizes = r.RSS[0].Rows
	}
	for _, n := range sizes {
		w(" %s rows |", thousands(float64(n)))
	}
	w(" growth | flat |")
	if r.Baseline {
		for _, n := range sizes {
			w(" before, %s rows |", thousands(float64(n)))
		}
		w(" before: flat | output as before |")
	}
	w("\n|---|")
	w("%s", strings.Repeat("---:|", len(sizes)+1))
	w("---|")
	if r.Baseline {
		w("%s---|---|", strings.Repeat("---:|", len(sizes)))
	}
	w("\n")
	for _, rr := range r.RSS {
		w("| %s → %s |", rr.Case.In, rr.Case.Out)
		for _, p := range rr.Peak {
			w(" %s |", mib(p))
		}
		w(" %s | %s |", growth(rr.Peak), yes(rssFlat(rr.Peak)))
		if r.Baseline {
			for _, p := range rr.BasePeak {
				w(" %s |", mib(p))
			}
			w(" %s | %s |", yes(rssFlat(rr.BasePeak)), yesNo(rr.Identical))
		}
		w("\n")
	}
	w("\n")

	w("## Reading\n\n")
	for _, line := range reading(r) {
		w("- %s\n", line)
	}
	return b.String()
}

// reading is the report's short interpretation, from the numbers.
func reading(r *results) []string {
	var out []string
	for _, cr := range r.Throughput {
		s := summarize(cr)
		c := cr.Case
		model := 1e6 / s.Raw
		switch {
		case c.Headline:
			verdict := "meeting"
			if s.Ratio < targetRatio {
				verdict = "short of"
			}
			line := fmt.Sprintf("On %s, where the model's run takes %.0f µs a row, score runs at %s of raw ONNX Runtime (%s in CPU time; %s end to end on %s rows, model load included), %s the %s target: its own work costs %.1f µs a row",
				c.Model, model, pct(s.Ratio), pct(s.CPURatio), pct(s.E2E/s.Raw), thousands(float64(c.Rows)), verdict, pct(targetRatio), s.Own)
			if c.RowBytes > 0 {
				line += fmt.Sprintf(", reading each row's %s bytes from the file among it, which raw ONNX Runtime, running one batch it holds in memory again and again, never does", thousands(float64(c.RowBytes)))
			}
			out = append(out, line+".")
		default:
			out = append(out, fmt.Sprintf("On the %s at batch %d (%s → %s) the model costs %.2f µs a row and score's own work %.2f µs, so score runs at %s of raw ONNX Runtime: with a model this cheap, reading, parsing, encoding and writing rows are the job.",
				c.Model, c.Batch, c.In, c.Out, model, s.Own, pct(s.Ratio)))
		}
		if r.Baseline && s.Base > 0 {
			out[len(out)-1] += fmt.Sprintf(" Before: %s rows/s (%s of raw); after ÷ before %.2f×.", thousands(s.Base), pct(s.BaseRatio), s.Score/s.Base)
		}
	}
	var grows []string
	for _, rr := range r.RSS {
		if !rssFlat(rr.Peak) {
			grows = append(grows, fmt.Sprintf("%s → %s (%s)", rr.Case.In, rr.Case.Out, growth(rr.Peak)))
		}
	}
	if len(r.RSS) > 0 {
		sizes := r.RSS[0].Rows
		span := fmt.Sprintf("%s to %s rows", thousands(float64(sizes[0])), thousands(float64(sizes[len(sizes)-1])))
		if len(grows) == 0 {
			out = append(out, fmt.Sprintf("Peak RSS stays flat from %s for every format: score streams, and its memory does not grow with the file.", span))
		} else {
			out = append(out, fmt.Sprintf("Peak RSS grows from %s for %s.", span, strings.Join(grows, ", ")))
		}
		if r.Baseline {
			var was []string
			for _, rr := range r.RSS {
				if !rssFlat(rr.BasePeak) {
					was = append(was, fmt.Sprintf("%s → %s (%s)", rr.Case.In, rr.Case.Out, growth(rr.BasePeak)))
				}
			}
			if len(was) > 0 {
				out = append(out, fmt.Sprintf("Before, it grew for %s.", strings.Join(was, ", ")))
			}
		}
	}
	if r.Baseline {
		var differ []string
		for _, cr := range r.Throughput {
			if cr.Identical != nil && !*cr.Identical {
				differ = append(differ, cr.Case.title())
			}
		}
		for _, rr := range r.RSS {
			if rr.Identical != nil && !*rr.Identical {
				differ = append(differ, rr.Case.title())
			}
		}
		switch {
		case len(differ) == 0:
			out = append(out, "Every output is byte for byte the one *before* wrote.")
		default:
			out = append(out, fmt.Sprintf("Outputs that differ in bytes from *before*'s: %s. A Parquet file of more than 32,768 rows now has a row group every 32,768 rows (the same rows and values) instead of one for the whole file, which *before* held in memory until the end.", strings.Join(differ, "; ")))
		}
	}
	return out
}

func pct(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" }

// pctRange is a range of shares, as "88.4–103.5%".
func pctRange(lo, hi float64) string {
	return strconv.FormatFloat(100*lo, 'f', 1, 64) + "–" + pct(hi)
}

func ratioOf(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func mib(kib int64) string { return strconv.FormatFloat(float64(kib)/1024, 'f', 1, 64) + " MiB" }

func growth(peaks []int64) string {
	if len(peaks) < 2 {
		return "–"
	}
	d := float64(peaks[len(peaks)-1]-peaks[0]) / 1024
	return fmt.Sprintf("%+.1f MiB", d)
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func yesNo(b *bool) string {
	if b == nil {
		return "–"
	}
	return yes(*b)
}

// thousands formats a rate or count rounded to a whole number, with
// thousands separators.
func thousands(f float64) string {
	s := strconv.FormatInt(int64(f+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
