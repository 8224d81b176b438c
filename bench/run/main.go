package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is the suite's settings, from flags.
type config struct {
	out  string // RESULTS.md, results.json and plots (PROFILE.md in profile mode)
	work string // scratch: the model repository, logs, profiles
	// Programs.
	serverBin, loadgenBin, ortbenchBin, ghzBin string
	bundled, ocrFile                           string
	models                                     []string
	modes                                      []string
	concurrency, batchingConcurrency           []int
	reps                                       int
	warmup, duration                           time.Duration
	rawWarmup, rawDuration                     time.Duration
	serverCPU, clientCPU                       int
	// quietCores is the load from other processes the suite waits to
	// fall below before each repetition.
	quietCores float64
	// retryBudget bounds the time spent measuring disturbed windows again.
	retryBudget time.Duration
	command     string
	quick       bool
	profile     bool
	profileFor  time.Duration
	// profileModels are the models --profile profiles, one after another.
	profileModels []string
	// serverArgs are extra flags for every server the suite starts.
	serverArgs []string
	// reportFrom names a results.json to write the report from again.
	reportFrom string
	// abBin, when not "", is the B server of an A/B run (A is serverBin),
	// started with abArgs; the table goes to abOut.
	abBin  string
	abArgs []string
	abOut  string
	// vad runs the streaming row (silero_vad in --models) on the model
	// file vadModel: vadSequences sequences of vadChunks chunks.
	vad                     bool
	vadModel                string
	vadSequences, vadChunks int
}

func parseConfig(args []string) (*config, error) {
	c := &config{}
	var models, modes, conc, bconc, pmodels string
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&c.out, "out", "bench", "folder for RESULTS.md, results.json and the PNG plots (PROFILE.md with --profile)")
	fs.StringVar(&c.work, "work", ".cache/bench-run", "scratch folder: model repository, server logs, profiles")
	fs.StringVar(&c.serverBin, "server", "bin/onnxserve", "onnxserve binary")
	fs.StringVar(&c.loadgenBin, "loadgen", ".cache/bin/loadgen", "bench/loadgen binary")
	fs.StringVar(&c.ortbenchBin, "ortbench", ".cache/bin/ortbench", "cmd/ortbench binary")
	fs.StringVar(&c.ghzBin, "ghz", ".cache/bin/ghz", "ghz binary; empty skips the ghz runs")
	fs.StringVar(&c.bundled, "models-dir", "models", "the bundled model repository")
	fs.StringVar(&c.ocrFile, "ocr-model", ".cache/bench-models/ocr_cls.onnx", "PaddleOCR direction classifier (scripts/fetch-bench-models.sh)")
	fs.StringVar(&models, "models", "simple,classifier,ocr_cls,"+vadModel, "models to run; "+vadModel+" is the streaming row (Silero VAD v5 over gRPC streams against raw ONNX Runtime)")
	fs.StringVar(&c.vadModel, "vad-model", ".cache/models/silero_vad/silero_vad.onnx", "Silero VAD v5 (make vad)")
	fs.IntVar(&c.vadSequences, "vad-sequences", 64, "streaming row: sequences run at once, each on its own gRPC stream")
	fs.IntVar(&c.vadChunks, "vad-chunks", 256, "streaming row: chunks of 512 samples (32 ms) per sequence")
	fs.StringVar(&modes, "modes", strings.Join([]string{modeNaive, modeGRPC, modeJSON, modeBinary}, ","), "served modes to run besides raw and ghz")
	fs.StringVar(&conc, "concurrency", "1,8,32,128", "closed-loop concurrencies of the main table")
	fs.StringVar(&bconc, "batching-concurrency", "1,2,4,8,16,32,64,128", "concurrencies of the batching section (every model, gRPC, batching off and on)")
	fs.IntVar(&c.reps, "reps", 3, "repetitions of every point; the report shows medians")
	fs.DurationVar(&c.warmup, "warmup", 500*time.Millisecond, "unmeasured load before each window (the server stays warm between points; this covers connections and the client)")
	fs.DurationVar(&c.duration, "duration", 2*time.Second, "measured window of each point")
	fs.DurationVar(&c.rawWarmup, "raw-warmup", 300*time.Millisecond, "raw baseline: unmeasured runs per batch size")
	fs.DurationVar(&c.rawDuration, "raw-duration", time.Second, "raw baseline: measured runs per batch size")
	fs.IntVar(&c.serverCPU, "server-cpu", 1, "CPU the server (and the raw baseline) is pinned to")
	fs.IntVar(&c.clientCPU, "client-cpu", 0, "CPU the load generators are pinned to")
	fs.Float64Var(&c.quietCores, "quiet-cores", 0.3, "other processes' CPU use, in cores, above which a window counts as disturbed; the suite also waits (up to 20s) for the machine to fall below it before each repetition")
	fs.DurationVar(&c.retryBudget, "retry-budget", 3*time.Minute, "time the suite may spend measuring windows again that other processes disturbed (used more than --quiet-cores)")
	fs.StringVar(&c.command, "command", "", "the command that started the suite, for the report (default: this program's own command line)")
	fs.BoolVar(&c.quick, "quick", false, "sanity run: one repetition, short windows")
	fs.BoolVar(&c.profile, "profile", false, "profile the server under load instead of benchmarking; writes PROFILE.md")
	fs.StringVar(&pmodels, "profile-models", "simple,ocr_cls", "models --profile profiles")
	var serverArgs, abArgs string
	fs.StringVar(&serverArgs, "server-args", "", "extra flags for the server, space separated (for experiments; the report lists them)")
	fs.DurationVar(&c.profileFor, "profile-seconds", 10*time.Second, "length of each CPU and allocation profile")
	fs.StringVar(&c.reportFrom, "report-from", "", "write RESULTS.md and the plots again from this results.json, without measuring")
	fs.StringVar(&c.abBin, "ab", "", "A/B run instead of the suite: this onnxserve binary (B) against --server (A), alternating, over gRPC at every --concurrency of every --models")
	fs.StringVar(&abArgs, "ab-args", "", "extra flags for the B server of --ab, space separated (--server-args are A's)")
	fs.StringVar(&c.abOut, "ab-out", ".cache/bench-ab/AB.md", "where --ab writes its table")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.quick {
		c.reps, c.warmup, c.duration, c.rawWarmup, c.rawDuration = 1, 300*time.Millisecond, time.Second, 100*time.Millisecond, 300*time.Millisecond
		c.vadChunks = min(c.vadChunks, 64)
	}
	var err error
	c.models, c.vad = splitModels(splitList(models))
	c.modes = splitList(modes)
	c.profileModels = splitList(pmodels)
	c.serverArgs = strings.Fields(serverArgs)
	c.abArgs = strings.Fields(abArgs)
	for _, m := range c.modes {
		if !slices.Contains([]string{modeNaive, modeGRPC, modeJSON, modeBinary}, m) {
			return nil, fmt.Errorf("--modes: unknown mode %q", m)
		}
	}
	if c.concurrency, err = intList(conc); err != nil {
		return nil, fmt.Errorf("--concurrency: %w", err)
	}
	if c.batchingConcurrency, err = intList(bconc); err != nil {
		return nil, fmt.Errorf("--batching-concurrency: %w", err)
	}
	if c.reps < 1 || c.warmup < 0 || c.duration <= 0 || c.rawDuration <= 0 || c.profileFor < time.Second {
		return nil, errors.New("--reps and --duration must be positive, --warmup >= 0, --profile-seconds >= 1s")
	}
	if c.vadSequences < 1 || c.vadChunks < 1 {
		return nil, errors.New("--vad-sequences and --vad-chunks must be positive")
	}
	if c.command == "" {
		c.command = strings.Join(append([]string{".cache/bin/run"}, args...), " ")
	}
	return c, nil
}

// splitModels takes the streaming row's name out of a --models list.
func splitModels(names []string) (stateless []string, vad bool) {
	for _, n := range names {
		if n == vadModel {
			vad = true
		} else {
			stateless = append(stateless, n)
		}
	}
	return stateless, vad
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a list of positive integers", s)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func main() {
	c, err := parseConfig(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch {
	case c.reportFrom != "":
		err = rewrite(c, c.reportFrom)
	case c.profile:
		err = runProfile(ctx, c)
	case c.abBin != "":
		err = runAB(ctx, c)
	default:
		err = runSuite(ctx, c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// snapshotServer copies the server binary into the scratch folder and
// runs that copy, so a rebuild of bin/ during the suite cannot swap the
// program under test (or under pprof's symbolizer) halfway.
func (c *config) snapshotServer() error {
	dst := filepath.Join(c.work, "onnxserve")
	if err := copyFile(c.serverBin, dst); err != nil {
		return fmt.Errorf("copy the server binary: %w", err)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		return err
	}
	c.serverBin = dst
	return nil
}

// checkPrograms fails early, naming what is missing.
func (c *config) checkPrograms(needGhz bool) error {
	if _, err := exec.LookPath("taskset"); err != nil {
		return errors.New("taskset (util-linux) is needed to pin the server and the load generators")
	}
	bins := []string{c.serverBin, c.loadgenBin, c.ortbenchBin}
	if needGhz && c.ghzBin != "" {
		bins = append(bins, c.ghzBin)
	}
	for _, b := range bins {
		if st, err := os.Stat(b); err != nil || st.IsDir() {
			return fmt.Errorf("%s not found; `make bench` builds it", b)
		}
	}
	return nil
}

func runSuite(ctx context.Context, c *config) error {
	if err := c.checkPrograms(true); err != nil {
		return err
	}
	models, err := loadModels(c.bundled, c.ocrFile, c.models)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	repo := filepath.Join(c.work, "repo")
	if err := writeRepository(repo, models); err != nil {
		return fmt.Errorf("model repository: %w", err)
	}
	served := servedNames(models)
	vadData := filepath.Join(c.work, "vad-audio.f32")
	if c.vad {
		if err := writeVAD(repo, c.vadModel); err != nil {
			return fmt.Errorf("model repository: %w", err)
		}
		if err := writeVADAudio(vadData, c.vadSequences, c.vadChunks); err != nil {
			return err
		}
		for _, v := range vadVariants {
			served = append(served, v.name)
		}
	}
	if err := c.snapshotServer(); err != nil {
		return err
	}
	res := newResults(c, models)
	logf("%d repetitions of %d points, about %s", c.reps, res.plannedPoints(models), res.estimate(models).Round(time.Second))

	srv, err := startServer(ctx, c.serverBin, c.serverCPU, repo, filepath.Join(c.work, "server.log"), served,
		append([]string{"--histogram-buckets", latencyBuckets(), "--pprof"}, c.serverArgs...)...)
	if err != nil {
		return err
	}
	defer srv.stop()
	e := &env{cfg: c, srv: srv, client: &http.Client{Timeout: 10 * time.Second}, retryBudget: c.retryBudget, vadData: vadData}
	for _, m := range models {
		bs, err := e.batchSizes(ctx, m.name)
		if err != nil {
			return err
		}
		if bs != nil {
			res.BatchSizes[m.name] = *bs
			logf("%s: the server measured batch sizes and chose %d", m.name, bs.Chosen)
		}
	}
	start := time.Now()
	for rep := 1; rep <= c.reps; rep++ {
		e.waitQuiet(ctx)
		for _, m := range models {
			if err := e.runModel(ctx, res, m, rep); err != nil {
				return err
			}
		}
		if c.vad {
			if err := e.runSequences(ctx, res, rep); err != nil {
				return err
			}
		}
	}
	if err := e.runHalfRate(ctx, res, models); err != nil {
		return err
	}
	if !c.quick && slices.Contains(c.concurrency, profileConcurrency) {
		if err := e.runCosts(ctx, res, models); err != nil {
			return err
		}
	}
	res.Meta.Elapsed = time.Since(start).Round(time.Second).String()
	res.Meta.Retried = e.retried
	srv.stop()
	return res.write(c.out)
}

// runModel measures every point of one model once.
func (e *env) runModel(ctx context.Context, res *results, m *model, rep int) error {
	c := e.cfg
	raw, ver, err := e.runRaw(ctx, m)
	if err != nil {
		return err
	}
	res.Meta.ORTVersion = ver
	for _, b := range m.rawSizes {
		res.add(pointKey{Model: m.name, Mode: modeRaw, Batch: b}, raw[b])
	}
	logf("[%d/%d] %s raw: %s", rep, c.reps, m.name, describeRaw(m, raw))
	measure := func(mode string, conc int) error {
		smp, err := e.runLoadgen(ctx, m, mode, conc, 0)
		if err == nil && e.again(ctx, smp) {
			smp, err = e.runLoadgen(ctx, m, mode, conc, 0)
		}
		if err != nil {
			return err
		}
		res.add(pointKey{Model: m.name, Mode: mode, Concurrency: conc}, smp)
		logf("[%d/%d] %s %s c=%d: %s", rep, c.reps, m.name, mode, conc, describe(smp))
		return nil
	}
	for _, mode := range c.modes {
		for _, conc := range c.concurrency {
			if err := measure(mode, conc); err != nil {
				return err
			}
		}
	}
	if batchingModel(m.name) {
		for _, mode := range []string{modeNaive, modeGRPC} {
			for _, conc := range c.batchingConcurrency {
				if slices.Contains(c.concurrency, conc) && slices.Contains(c.modes, mode) {
					continue // measured above
				}
				if err := measure(mode, conc); err != nil {
					return err
				}
			}
		}
	}
	if m.drift != "" && slices.Contains(c.modes, modeGRPC) {
		// Right after the plain copy's point at the same concurrency (measured
		// above, or now), so the two are compared within one repetition.
		if !slices.Contains(c.concurrency, driftConcurrency) && !slices.Contains(c.batchingConcurrency, driftConcurrency) {
			if err := measure(modeGRPC, driftConcurrency); err != nil {
				return err
			}
		}
		if err := measure(modeDrift, driftConcurrency); err != nil {
			return err
		}
	}
	if m.quality != "" {
		// Off and on back to back, qualityPairs times, so each pair
		// compares the two under the same conditions, and in turns which
		// goes first, so a drift of the machine within a pair favours
		// neither. The verdict is the median of the pairs: on this shared
		// machine one pair's ratio ranges from 70% to 125% (36 pairs of one
		// run, bench/QUALITY.md), so 18 pairs in three repetitions.
		for pair := range qualityPairs {
			modes := []string{modeQualityOff, modeQuality}
			if (rep*qualityPairs+pair)%2 == 0 {
				modes[0], modes[1] = modes[1], modes[0]
			}
			for _, mode := range modes {
				if err := measure(mode, qualityConcurrency); err != nil {
					return err
				}
			}
		}
	}
	if m.name == "simple" && c.ghzBin != "" {
		for _, conc := range c.concurrency {
			smp, cmdline, err := e.runGhz(ctx, m, conc)
			if err == nil && e.again(ctx, smp) {
				smp, cmdline, err = e.runGhz(ctx, m, conc)
			}
			if err != nil {
				return err
			}
			res.add(pointKey{Model: m.name, Mode: modeGhz, Concurrency: conc}, smp)
			res.GhzCommands[strconv.Itoa(conc)] = cmdline
			logf("[%d/%d] %s %s c=%d: %s", rep, c.reps, m.name, modeGhz, conc, describe(smp))
		}
	}
	return nil
}

// batchingModel reports whether the batching section covers the model:
// every model the suite knows has a batch dimension.
func batchingModel(string) bool { return true }

// halfRateWorkers bounds the requests in flight of the open-loop runs;
// at half the peak rate far fewer are needed.
const halfRateWorkers = 256

// runHalfRate runs each batching model open-loop at half its peak
// batched gRPC throughput, for the latency bound of the batching section.
func (e *env) runHalfRate(ctx context.Context, res *results, models []*model) error {
	for _, m := range models {
		if !batchingModel(m.name) {
			continue
		}
		peak := res.peak(m.name, modeGRPC)
		if peak <= 0 {
			continue
		}
		rate := peak / 2
		res.HalfRate[m.name] = rate
		for rep := 1; rep <= e.cfg.reps; rep++ {
			smp, err := e.runLoadgen(ctx, m, modeGRPC, halfRateWorkers, rate)
			if err == nil && e.again(ctx, smp) {
				smp, err = e.runLoadgen(ctx, m, modeGRPC, halfRateWorkers, rate)
			}
			if err != nil {
				return err
			}
			res.add(pointKey{Model: m.name, Mode: modeGRPC, Rate: rate}, smp)
			logf("[%d/%d] %s %s at %.0f/s open loop: %s", rep, e.cfg.reps, m.name, modeGRPC, rate, describe(smp))
		}
	}
	return nil
}

// quietWait bounds how long waitQuiet waits for other processes.
const quietWait = 20 * time.Second

// waitQuiet waits, up to quietWait, until processes other than the server
// use less than quietCores; the load left is reported per point anyway.
func (e *env) waitQuiet(ctx context.Context) {
	start := time.Now()
	for waited := false; ; waited = true {
		other, err := e.otherLoad(ctx, time.Second)
		if err != nil || other < e.cfg.quietCores {
			if waited {
				logf("the machine quietened after %s", time.Since(start).Round(time.Second))
			}
			return
		}
		if time.Since(start) > quietWait {
			logf("other processes still use %.2f cores after %s; measuring anyway (see the other-load column)", other, quietWait)
			return
		}
		if !waited {
			logf("other processes use %.2f cores; waiting up to %s for the machine to quieten", other, quietWait)
		}
	}
}

// otherLoad returns the CPU other processes than the server used over d,
// in cores.
func (e *env) otherLoad(ctx context.Context, d time.Duration) (float64, error) {
	m0, err := machineBusy()
	if err != nil {
		return 0, err
	}
	s0, err := e.srv.cpu()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	m1, err := machineBusy()
	if err != nil {
		return 0, err
	}
	s1, err := e.srv.cpu()
	if err != nil {
		return 0, err
	}
	return ((m1 - m0) - (s1 - s0)).Seconds() / time.Since(t0).Seconds(), nil
}

func describe(s sample) string {
	out := fmt.Sprintf("%.0f inf/s, p50 %.2f ms, p99 %.2f ms, server %.3f cpu-s/1k, batch %.1f, cores server %.2f client %.2f other %.2f",
		s.Throughput, s.P50Ms, s.P99Ms, s.ServerCPUPer1k, s.MeanBatch, s.ServerCores, s.ClientCores, s.OtherCores)
	if s.Predictions > 0 || s.TapDropped > 0 {
		out += fmt.Sprintf(", predictions %.0f, tap drops %.0f, store %.1f MB", s.Predictions, s.TapDropped, s.StoreBytes/1e6)
	}
	if s.Errors > 0 {
		out += fmt.Sprintf(", %d ERRORS %v", s.Errors, s.ErrorSamples)
	}
	return out
}

func describeRaw(m *model, raw map[int]sample) string {
	var parts []string
	for _, b := range m.rawSizes {
		parts = append(parts, fmt.Sprintf("b%d %.0f/s", b, raw[b].Throughput))
	}
	return strings.Join(parts, ", ")
}
