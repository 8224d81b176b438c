package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// abSide is one of the two servers an A/B run compares.
type abSide struct {
	label string // "A" or "B"
	bin   string
	args  []string
	env   *env
}

// abPoint is one model and concurrency of an A/B run, with every
// repetition's window of each side.
type abPoint struct {
	model string
	conc  int
	a, b  []sample
}

// runAB compares two server builds (--server as A, --ab as B) on the same
// repository: both run side by side, pinned to the same CPU, and each
// repetition measures A then B, or B then A on odd repetitions, over gRPC
// at every --concurrency, so slow drifts of a shared machine fall on both
// alike. It writes a table of medians and the ratio B/A to --ab-out.
func runAB(ctx context.Context, c *config) error {
	if err := c.checkPrograms(false); err != nil {
		return err
	}
	if st, err := os.Stat(c.abBin); err != nil || st.IsDir() {
		return fmt.Errorf("--ab %s: not found", c.abBin)
	}
	models, err := loadModels(c.bundled, c.ocrFile, c.models)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	repo := filepath.Join(c.work, "repo")
	if err := writeRepository(repo, models); err != nil {
		return fmt.Errorf("model repository: %w", err)
	}
	sides := []*abSide{{label: "A", bin: c.serverBin, args: c.serverArgs}, {label: "B", bin: c.abBin, args: c.abArgs}}
	for _, s := range sides {
		// A copy of each binary, so a rebuild during the run cannot
		// swap the program under test.
		dst := filepath.Join(c.work, "onnxserve-"+s.label)
		if err := copyFile(s.bin, dst); err != nil {
			return fmt.Errorf("copy %s: %w", s.bin, err)
		}
		if err := os.Chmod(dst, 0o755); err != nil {
			return err
		}
		srv, err := startServer(ctx, dst, c.serverCPU, repo, filepath.Join(c.work, "ab-"+s.label+".log"), servedNames(models),
			append([]string{"--histogram-buckets", latencyBuckets()}, s.args...)...)
		if err != nil {
			return fmt.Errorf("server %s: %w", s.label, err)
		}
		defer srv.stop()
		s.env = &env{cfg: c, srv: srv, client: &http.Client{Timeout: 10 * time.Second}, retryBudget: c.retryBudget}
	}
	var points []*abPoint
	for _, m := range models {
		for _, conc := range c.concurrency {
			points = append(points, &abPoint{model: m.name, conc: conc})
		}
	}
	start := time.Now()
	for rep := 1; rep <= c.reps; rep++ {
		sides[0].env.waitQuiet(ctx)
		i := 0
		for _, m := range models {
			for _, conc := range c.concurrency {
				p := points[i]
				i++
				for _, s := range abOrder(sides, rep) {
					smp, err := s.env.measure(ctx, m, modeGRPC, conc)
					if err != nil {
						return fmt.Errorf("%s %s c=%d: %w", s.label, m.name, conc, err)
					}
					logf("rep %d %s %s c=%d: %s", rep, s.label, m.name, conc, describe(smp))
					if s.label == "A" {
						p.a = append(p.a, smp)
					} else {
						p.b = append(p.b, smp)
					}
				}
			}
		}
	}
	report := abReport(c, points, time.Since(start))
	if err := os.MkdirAll(filepath.Dir(c.abOut), 0o755); err != nil {
		return err
	}
	return os.WriteFile(c.abOut, []byte(report), 0o644)
}

// abOrder is the order of the sides in repetition rep: A first on even
// repetitions, B first on odd ones.
func abOrder(sides []*abSide, rep int) []*abSide {
	if rep%2 == 1 {
		return []*abSide{sides[1], sides[0]}
	}
	return sides
}

// measure runs one window of load, again while other processes disturbed
// it and the retry budget lasts.
func (e *env) measure(ctx context.Context, m *model, mode string, conc int) (sample, error) {
	for {
		smp, err := e.runLoadgen(ctx, m, mode, conc, 0)
		if err != nil || !e.again(ctx, smp) {
			return smp, err
		}
	}
}

// abReport is the Markdown of an A/B run: per point the medians of
// throughput and server CPU of each side, the ratio B/A of the medians and
// every repetition's throughput, so the spread shows beside the result.
func abReport(c *config, points []*abPoint, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| model | concurrency | A inf/s (median) | B inf/s (median) | B / A | A cpu-s/1k | B cpu-s/1k | A every rep | B every rep |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, p := range points {
		ta, tb := medianOf(p.a, throughputOf), medianOf(p.b, throughputOf)
		ratio := 0.0
		if ta > 0 {
			ratio = tb / ta
		}
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %.1f%% | %.4f | %.4f | %s | %s |\n", p.model, p.conc, ta, tb, 100*ratio,
			medianOf(p.a, cpuOf), medianOf(p.b, cpuOf), everyRep(p.a), everyRep(p.b))
	}
	fmt.Fprintf(&b, "\nA: `%s`; B: `%s`. %d repetitions, A and B alternating which goes first; %s in all.\n",
		strings.Join(append([]string{filepath.Base(c.serverBin)}, c.serverArgs...), " "),
		strings.Join(append([]string{filepath.Base(c.abBin)}, c.abArgs...), " "), c.reps, took.Round(time.Second))
	return b.String()
}

func throughputOf(s sample) float64 { return s.Throughput }
func cpuOf(s sample) float64        { return s.ServerCPUPer1k }

// medianOf is the median of f over samples, 0 for none.
func medianOf(samples []sample, f func(sample) float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = f(s)
	}
	return medianFloats(v)
}

// medianFloats is the median of v (which it sorts), 0 for none.
func medianFloats(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// everyRep lists each repetition's throughput, in order.
func everyRep(samples []sample) string {
	parts := make([]string, len(samples))
	for i, s := range samples {
		parts[i] = fmt.Sprintf("%.0f", s.Throughput)
	}
	return strings.Join(parts, ", ")
}
