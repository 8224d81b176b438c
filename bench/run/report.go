package main

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Targets the suite reports against.
const (
	targetOCRvsRaw        = 0.90  // PaddleOCR cls over gRPC, share of raw at the same batch size
	targetSimpleVsNaive   = 5.0   // simple over gRPC at the top concurrency, times naive
	targetSimpleRate      = 25000 // simple over gRPC at the top concurrency, inferences/s
	targetBinaryVsGRPC    = 0.80  // HTTP binary throughput, share of gRPC
	targetJSONvsGRPCOnCNN = 0.50  // HTTP JSON on the CNN, share of gRPC
	targetOverheadMicros  = 20.0  // server CPU per simple inference beyond ONNX Runtime
	targetBatchingGain    = 5.0   // batching on / off, simple at concurrency 64
	targetDriftShare      = 0.95  // drift sample 1.0 + NaN/range validation on, share of off
	targetQualityShare    = 0.95  // monitoring (sample 1.0) on, share of off
	batchingGainConc      = 64
	targetCNNvsBestRaw    = 0.95 // the CNN over gRPC at saturation, share of raw at its best batch size
	targetLowLoadP50      = 1.10 // batching on / off, p50 at concurrency 1
)

// rawAt interpolates the raw baseline of model linearly in the batch size:
// items per second and CPU seconds per 1,000 items at batch size b.
func (r *results) rawAt(model string, b float64) (itemsPerSec, cpuPer1k float64, ok bool) {
	type pt struct{ b, ips, cpu float64 }
	var pts []pt
	for _, p := range r.Points {
		if p.Model == model && p.Mode == modeRaw {
			pts = append(pts, pt{float64(p.Batch), p.Median.Throughput, p.Median.ServerCPUPer1k})
		}
	}
	if len(pts) == 0 {
		return 0, 0, false
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].b < pts[j].b })
	b = min(max(b, pts[0].b), pts[len(pts)-1].b)
	for i := 1; i < len(pts); i++ {
		if b <= pts[i].b {
			lo, hi := pts[i-1], pts[i]
			t := (b - lo.b) / (hi.b - lo.b)
			return lo.ips + t*(hi.ips-lo.ips), lo.cpu + t*(hi.cpu-lo.cpu), true
		}
	}
	return pts[0].ips, pts[0].cpu, true
}

// ratio returns a/b of two points' median throughputs.
func (r *results) ratio(a, b pointKey) (float64, bool) {
	x, ok1 := r.get(a)
	y, ok2 := r.get(b)
	if !ok1 || !ok2 || y.Throughput == 0 {
		return 0, false
	}
	return x.Throughput / y.Throughput, true
}

// vsRaw is a served point's throughput over raw ONNX Runtime's at the
// point's mean batch size.
func (r *results) vsRaw(k pointKey) (ratio, batch float64, ok bool) {
	s, ok := r.get(k)
	if !ok || s.MeanBatch == 0 {
		return 0, 0, false
	}
	ips, _, ok := r.rawAt(k.Model, s.MeanBatch)
	if !ok || ips == 0 {
		return 0, 0, false
	}
	return s.Throughput / ips, s.MeanBatch, true
}

// overheadMicros is the server's CPU per inference beyond what ONNX
// Runtime itself spends per item at the same batch size, in microseconds.
func (r *results) overheadMicros(k pointKey) (float64, bool) {
	s, ok := r.get(k)
	if !ok || s.Requests == 0 {
		return 0, false
	}
	_, rawCPU, ok := r.rawAt(k.Model, max(s.MeanBatch, 1))
	if !ok {
		return 0, false
	}
	return (s.ServerCPUPer1k - rawCPU) * 1000, true
}

func (r *results) topConc() int { return slices.Max(r.cfg.concurrency) }

func (r *results) hasModel(name string) bool {
	return slices.ContainsFunc(r.models, func(m *model) bool { return m.name == name })
}

// target is one line of the targets table.
type target struct {
	what, measured string
	met            bool
	known          bool
}

func verdict(t target) string {
	switch {
	case !t.known:
		return "not measured"
	case t.met:
		return "**met**"
	default:
		return "**not met**"
	}
}

func (r *results) targets() []target {
	var ts []target
	top := r.topConc()
	if r.hasModel("ocr_cls") {
		best, bestC, bestB := 0.0, 0, 0.0
		for _, c := range r.cfg.concurrency {
			if v, b, ok := r.vsRaw(pointKey{Model: "ocr_cls", Mode: modeGRPC, Concurrency: c}); ok && v > best {
				best, bestC, bestB = v, c, b
			}
		}
		ts = append(ts, target{
			what:     fmt.Sprintf("PaddleOCR cls over gRPC ≥ %.0f%% of raw ONNX Runtime at the same effective batch size", 100*targetOCRvsRaw),
			measured: fmt.Sprintf("%.0f%% at concurrency %d (mean batch %.1f); best of the concurrencies", 100*best, bestC, bestB),
			met:      best >= targetOCRvsRaw, known: bestC > 0,
		})
	}
	if r.hasModel("simple") {
		g := pointKey{Model: "simple", Mode: modeGRPC, Concurrency: top}
		v, ok := r.ratio(g, pointKey{Model: "simple", Mode: modeNaive, Concurrency: top})
		ts = append(ts, target{
			what:     fmt.Sprintf("simple over gRPC at concurrency %d ≥ %.0f× naive (batching off)", top, targetSimpleVsNaive),
			measured: fmt.Sprintf("%.2f×", v), met: v >= targetSimpleVsNaive, known: ok,
		})
		s, ok := r.get(g)
		ts = append(ts, target{
			what:     fmt.Sprintf("simple over gRPC at concurrency %d ≥ %s inferences/s on one server core", top, thousands(targetSimpleRate)),
			measured: thousands(s.Throughput) + "/s", met: s.Throughput >= targetSimpleRate, known: ok,
		})
	}
	for _, m := range r.models {
		v, ok := r.ratio(pointKey{Model: m.name, Mode: modeBinary, Concurrency: top}, pointKey{Model: m.name, Mode: modeGRPC, Concurrency: top})
		ts = append(ts, target{
			what:     fmt.Sprintf("HTTP binary within %.0f%% of gRPC (%s, concurrency %d)", 100*targetBinaryVsGRPC, m.name, top),
			measured: fmt.Sprintf("%.0f%%", 100*v), met: v >= targetBinaryVsGRPC, known: ok,
		})
	}
	if r.hasModel("ocr_cls") {
		v, ok := r.ratio(pointKey{Model: "ocr_cls", Mode: modeJSON, Concurrency: top}, pointKey{Model: "ocr_cls", Mode: modeGRPC, Concurrency: top})
		ts = append(ts, target{
			what:     fmt.Sprintf("HTTP JSON on the CNN (ocr_cls) within %.0f%% of gRPC (concurrency %d)", 100*targetJSONvsGRPCOnCNN, top),
			measured: fmt.Sprintf("%.0f%%", 100*v), met: v >= targetJSONvsGRPCOnCNN, known: ok,
		})
	}
	if r.hasModel("simple") {
		v, ok := r.overheadMicros(pointKey{Model: "simple", Mode: modeGRPC, Concurrency: top})
		ts = append(ts, target{
			what:     fmt.Sprintf("server CPU per simple inference beyond ONNX Runtime < %.0f µs (gRPC, concurrency %d)", targetOverheadMicros, top),
			measured: fmt.Sprintf("%.1f µs", v), met: v < targetOverheadMicros, known: ok,
		})
		v, ok = r.ratio(pointKey{Model: "simple", Mode: modeGRPC, Concurrency: batchingGainConc}, pointKey{Model: "simple", Mode: modeNaive, Concurrency: batchingGainConc})
		ts = append(ts, target{
			what:     fmt.Sprintf("batching on ≥ %.0f× batching off, simple over gRPC at concurrency %d", targetBatchingGain, batchingGainConc),
			measured: fmt.Sprintf("%.2f×", v), met: v >= targetBatchingGain, known: ok,
		})
	}
	if r.hasModel("ocr_cls") {
		sat, satC, best, bestB, ok := r.saturationVsBestRaw("ocr_cls")
		ts = append(ts, target{
			what:     fmt.Sprintf("PaddleOCR cls over gRPC at saturation ≥ %.0f%% of raw ONNX Runtime at its best batch size", 100*targetCNNvsBestRaw),
			measured: fmt.Sprintf("%s/s at concurrency %d = %.0f%% of raw's %s/s at batch %d", thousands(sat), satC, 100*sat/max(best, 1), thousands(best), bestB),
			met:      ok && sat >= targetCNNvsBestRaw*best, known: ok,
		})
	}
	for _, m := range r.models {
		off, ok1 := r.get(pointKey{Model: m.name, Mode: modeNaive, Concurrency: 1})
		on, ok2 := r.get(pointKey{Model: m.name, Mode: modeGRPC, Concurrency: 1})
		ts = append(ts, target{
			what:     fmt.Sprintf("%s at concurrency 1: batching on p50 within %.0f%% of batching off", m.name, 100*(targetLowLoadP50-1)),
			measured: fmt.Sprintf("on %.3f ms, off %.3f ms (%.2f×)", on.P50Ms, off.P50Ms, on.P50Ms/max(off.P50Ms, 1e-9)),
			met:      ok1 && ok2 && on.P50Ms <= targetLowLoadP50*off.P50Ms, known: ok1 && ok2,
		})
		worst, worstC, n := 0.0, 0, 0
		for _, c := range r.cfg.batchingConcurrency {
			if v, ok := r.ratio(pointKey{Model: m.name, Mode: modeGRPC, Concurrency: c}, pointKey{Model: m.name, Mode: modeNaive, Concurrency: c}); ok {
				if n == 0 || v < worst {
					worst, worstC = v, c
				}
				n++
			}
		}
		ts = append(ts, target{
			what:     fmt.Sprintf("%s over gRPC: batching on ≥ batching off in throughput at every concurrency of %v", m.name, r.cfg.batchingConcurrency),
			measured: fmt.Sprintf("lowest on / off %.2f× (concurrency %d), %d concurrencies", worst, worstC, n),
			met:      n > 0 && worst >= 1, known: n > 0,
		})
	}
	for _, m := range r.models {
		if !batchingModel(m.name) {
			continue
		}
		bound, s, ok := r.halfRateBound(m)
		ts = append(ts, target{
			what: fmt.Sprintf("%s p99 ≤ max_queue_delay + 3 × one batch's compute time at half the peak rate (%s/s), server-side",
				m.name, thousands(r.HalfRate[m.name])),
			measured: fmt.Sprintf("server p99 %.2f ms (client-observed %.2f ms), bound %.2f ms", s.ServerP99Ms, s.P99Ms, bound),
			met:      s.ServerP99Ms <= bound, known: ok,
		})
	}
	return ts
}

// halfRateBound returns the latency bound of the open-loop run at half
// the peak rate, in milliseconds, and the run's median sample. The bound
// models the server alone (queue wait plus batches), so it is held against
// the server's own request duration; the client-observed latency adds the
// client and the loopback network.
func (r *results) halfRateBound(m *model) (bound float64, s sample, ok bool) {
	p, ok := r.openLoop(m.name)
	if !ok {
		return 0, sample{}, false
	}
	bound = float64(m.queueDelay)/float64(time.Millisecond) + 3*p.Median.ComputeMs
	return bound, p.Median, true
}

func (r *results) markdown(plots map[string][]string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mt := r.Meta
	w("# onnxserve benchmark results\n\n")
	w("The claim under test: onnxserve is as fast as calling ONNX Runtime yourself, with a server around it. ")
	w("Every figure below comes from one run of the suite, with the raw baseline, the naive server and onnxserve measured side by side on the same machine, model files and core.\n\n")
	if mt.Quick {
		w("> **Quick run** (`--quick`): one repetition of short windows; a sanity check, not a measurement to quote.\n\n")
	}
	w("## Setup\n\n")
	w("| | |\n|---|---|\n")
	w("| date | %s |\n| commit | `%s` |\n| command | `%s` |\n", mt.Date, mt.Commit, mt.Command)
	w("| machine | %d CPUs (`nproc`), %s, %s |\n| software | %s, ONNX Runtime %s |\n", mt.NumCPU, mt.CPUModel, mt.Kernel, mt.GoVersion, mt.ORTVersion)
	w("| placement | server pinned to CPU %d (`taskset -c %d`; Go sizes GOMAXPROCS to it), one model instance with `intra_op_threads: 1`; load generators pinned to CPU %d; raw baseline on CPU %d |\n",
		mt.ServerCPU, mt.ServerCPU, mt.ClientCPU, mt.ServerCPU)
	w("| windows | %s warm-up, then %s measured, per point; %d repetition(s), medians shown; whole suite %s |\n", mt.Warmup, mt.Duration, mt.Reps, mt.Elapsed)
	if len(mt.ServerArgs) > 0 {
		w("| server flags | `%s` (besides the suite's own) |\n", strings.Join(mt.ServerArgs, " "))
	}
	w("| transport | loopback (127.0.0.1) only |\n\n")
	w("Modes: **raw** = `cmd/ortbench`, the model run in a loop through the server's own ONNX Runtime binding, no server; ")
	w("**naive-grpc** = onnxserve with the model's `dynamic_batching` block removed (each request runs alone); ")
	w("**onnxserve-grpc / -http-json / -http-binary** = onnxserve with dynamic batching as configured, driven over gRPC (`raw_input_contents`), HTTP JSON and HTTP with the binary tensor extension; ")
	w("**ghz-grpc** = the same gRPC server driven by ghz instead of our load generator. ")
	w("All rows except ghz-grpc come from `bench/loadgen` (closed loop: each of *concurrency* workers sends its next request when the last is answered; every answer is checked, and inputs vary so that swapped rows count as errors). Each request carries one row.\n\n")
	w("Columns: *server CPU s/1k* = the server process's CPU seconds (from `/proc/<pid>/stat`) per 1,000 answered inferences; ")
	w("*mean batch* = rows per executed batch over the window (from `onnxserve_batch_size`); *server/client cores* = CPU time over window length; ")
	w("*other* = CPU used by every other process on the machine during the window. %s\n\n", r.noiseNote())

	w("## Targets\n\n| target | measured | verdict |\n|---|---|---|\n")
	for _, t := range r.targets() {
		w("| %s | %s | %s |\n", t.what, t.measured, verdict(t))
	}
	w("\n")

	for _, m := range r.models {
		r.modelSection(&b, m, plots[m.name])
	}
	r.lowLoadSection(&b)
	r.batchSizeSection(&b)
	r.batchingSection(&b)
	r.overheadSection(&b)
	r.costsSection(&b)
	r.ghzSection(&b)
	r.driftSection(&b)
	r.qualitySection(&b)
	r.sequencesSection(&b)
	w("## Reproduce\n\n")
	w("```\nmake bench          # this file, results.json and the plots (10 to 14 minutes on 2 cores)\nmake bench-quick    # one short repetition into .cache/bench-quick/\nmake bench-profile  # CPU and allocation profiles of the server into bench/PROFILE.md\n```\n")
	return b.String()
}

// noiseNote summarises the load of other processes over all windows.
func (r *results) noiseNote() string {
	var v []float64
	for _, p := range r.Points {
		if p.Mode == modeRaw {
			continue
		}
		for _, s := range p.Samples {
			v = append(v, s.OtherCores)
		}
	}
	if len(v) == 0 {
		return ""
	}
	slices.Sort(v)
	noisy := 0
	for _, x := range v {
		if x > r.Meta.QuietCores {
			noisy++
		}
	}
	disturbed := 0
	for _, p := range r.Points {
		if p.Disturbed {
			disturbed++
		}
	}
	return fmt.Sprintf("The machine is shared with other work: over the %d windows kept, other processes used a median of %.2f cores (max %.2f), and %d window(s) saw more than %.2f cores of it. "+
		"A disturbed window was measured again once the machine quietened (%d times, within a bounded time budget); each point's median leaves out its disturbed repetitions, "+
		"and the %d point(s) where every repetition was disturbed are marked †: read those as lower bounds.",
		len(v), v[len(v)/2], v[len(v)-1], noisy, r.Meta.QuietCores, r.Meta.Retried, disturbed)
}

func (r *results) modelSection(b *strings.Builder, m *model, plots []string) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## %s\n\n", m.name)
	switch m.name {
	case "simple":
		w("INT32 [1,16] ×2 → sum and difference; max_batch_size %d, max_queue_delay %s (dispatch %s). Almost no compute: the row measures the server itself.\n\n", m.maxBatch, m.queueDelay, m.dispatch)
	case "classifier":
		w("FP32 [1,64] → [1,10] two-layer perceptron (version %s); max_batch_size %d, max_queue_delay %s (dispatch %s).\n\n", m.version, m.maxBatch, m.queueDelay, m.dispatch)
	case "ocr_cls":
		w("PaddleOCR's text direction classifier `ch_ppocr_mobile_v2.0_cls_infer.onnx` (a mobile CNN): FP32 [1,3,48,192] → [1,2]; max_batch_size %d, batch cap chosen by the server's measurement (dispatch %s). Each request is 110,592 bytes raw, about 280 KB as JSON.\n\n", m.maxBatch, m.dispatch)
	}
	w("Raw ONNX Runtime (`cmd/ortbench`, one thread, batches back to back):\n\n")
	w("| batch | items/s | batch p50 ms | batch p99 ms | CPU s/1k items |\n|---:|---:|---:|---:|---:|\n")
	for _, bs := range m.rawSizes {
		if s, ok := r.get(pointKey{Model: m.name, Mode: modeRaw, Batch: bs}); ok {
			w("| %d | %s | %.3f | %.3f | %.4f |\n", bs, thousands(s.Throughput), s.P50Ms, s.P99Ms, s.ServerCPUPer1k)
		}
	}
	w("\nServed (medians of the undisturbed repetitions; *range* = their lowest and highest throughput, *used* = how many of %d):\n\n", r.Meta.Reps)
	w("| mode | concurrency | inferences/s | range | p50 ms | p90 ms | p99 ms | server p99 ms | server CPU s/1k | mean batch | server cores | client cores | other cores | used | errors |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, mode := range append(slices.Clone(r.cfg.modes), modeGhz) {
		for _, c := range r.cfg.concurrency {
			p := r.index[pointKey{Model: m.name, Mode: mode, Concurrency: c}]
			if p == nil {
				continue
			}
			s := p.Median
			w("| %s | %d | %s | %s–%s | %.2f | %.2f | %.2f | %.2f | %.4f | %.2f | %.2f | %.2f | %.2f | %s | %s |\n",
				mode, c, thousands(s.Throughput), thousands(p.MinThroughput), thousands(p.MaxThroughput), s.P50Ms, s.P90Ms, s.P99Ms, s.ServerP99Ms, s.ServerCPUPer1k, s.MeanBatch,
				s.ServerCores, s.ClientCores, s.OtherCores, usedCell(p), errorsCell(s))
		}
	}
	w("\nRatios of throughput at the same concurrency (onnxserve = onnxserve-grpc; raw at the server's mean batch size, interpolated between measured sizes):\n\n")
	w("| concurrency | onnxserve / raw | onnxserve / naive | HTTP JSON / gRPC | HTTP binary / gRPC |\n|---:|---:|---:|---:|---:|\n")
	for _, c := range r.cfg.concurrency {
		g := pointKey{Model: m.name, Mode: modeGRPC, Concurrency: c}
		cell := func(v float64, ok bool) string {
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%.2f", v)
		}
		rawCell := "–"
		if v, bs, ok := r.vsRaw(g); ok {
			rawCell = fmt.Sprintf("%.2f (batch %.1f)", v, bs)
		}
		w("| %d | %s | %s | %s | %s |\n", c, rawCell,
			cell(r.ratio(g, pointKey{Model: m.name, Mode: modeNaive, Concurrency: c})),
			cell(r.ratio(pointKey{Model: m.name, Mode: modeJSON, Concurrency: c}, g)),
			cell(r.ratio(pointKey{Model: m.name, Mode: modeBinary, Concurrency: c}, g)))
	}
	w("\n")
	for _, p := range plots {
		w("![%s](%s)\n", strings.TrimSuffix(p, ".png"), p)
	}
	w("\n")
}

// usedCell says how many repetitions the median used, marked when every
// one was disturbed by other processes.
func usedCell(p *point) string {
	if p.Disturbed {
		return fmt.Sprintf("%d/%d †", p.Used, len(p.Samples))
	}
	return fmt.Sprintf("%d/%d", p.Used, len(p.Samples))
}

func errorsCell(s sample) string {
	if s.Errors == 0 {
		return "0"
	}
	keys := make([]string, 0, len(s.ErrorSamples))
	for k := range s.ErrorSamples {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		return fmt.Sprintf("**%d** (%s)", s.Errors, strings.ReplaceAll(keys[0], "|", "/"))
	}
	return fmt.Sprintf("**%d**", s.Errors)
}

func (r *results) batchingSection(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## Batching\n\n")
	w("gRPC, closed loop, batching off (naive-grpc) against on (onnxserve-grpc); the distribution is the share of executed batches per size bucket of `onnxserve_batch_size`.\n\n")
	for _, m := range r.models {
		if !batchingModel(m.name) {
			continue
		}
		w("### %s (max_batch_size %d, dispatch %s, max_queue_delay %s, preferred sizes %v)\n\n", m.name, m.maxBatch, m.dispatch, m.queueDelay, preferred(m))
		w("| concurrency | off inf/s | on inf/s | on / off | off p50 / p99 ms | on p50 / p99 ms | on mean batch | on batch sizes |\n")
		w("|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, c := range r.cfg.batchingConcurrency {
			off, ok1 := r.get(pointKey{Model: m.name, Mode: modeNaive, Concurrency: c})
			on, ok2 := r.get(pointKey{Model: m.name, Mode: modeGRPC, Concurrency: c})
			if !ok1 || !ok2 {
				continue
			}
			w("| %d | %s | %s | %.2f× | %.2f / %.2f | %.2f / %.2f | %.2f | %s |\n", c, thousands(off.Throughput), thousands(on.Throughput),
				on.Throughput/off.Throughput, off.P50Ms, off.P99Ms, on.P50Ms, on.P99Ms, on.MeanBatch, formatShares(on.Batches))
		}
		if g, ok := r.batchingCeiling(m, batchingGainConc); ok {
			w("\nCeiling on the gain at concurrency %d, for a server bound by its one core: with batching off it spends %.1f µs of CPU per inference, of which ONNX Runtime's own run of one row is %.1f µs; ",
				batchingGainConc, g.naiveMicros, g.raw1Micros)
			w("batching can save at most the difference between that and ONNX Runtime's cost per row in a full batch of %d (%.2f µs), so throughput can rise by at most **%.2f×**; the rest of the cost is paid per request whatever the batch size.\n",
				m.maxBatch, g.rawMaxMicros, g.ceiling)
		}
		if p, ok := r.openLoop(m.name); ok {
			bound, s, _ := r.halfRateBound(m)
			w("\nOpen loop at half the peak batched rate: %s requests/s sent on a fixed schedule (peak %s/s), %d workers (a request that finds them all busy counts its latency from its scheduled time): ",
				thousands(p.Rate), thousands(2*p.Rate), halfRateWorkers)
			w("achieved %s/s; client-observed p50 %.2f ms, p99 %.2f ms; server-side (`onnxserve_request_duration_seconds`, arrival to response written) p50 %.2f ms, p99 %.2f ms; queue wait p99 %.2f ms; ",
				thousands(s.Throughput), s.P50Ms, s.P99Ms, s.ServerP50Ms, s.ServerP99Ms, s.QueueP99Ms)
			w("mean batch %.2f (%s); one batch's compute %.3f ms (mean of `onnxserve_compute_duration_seconds`). ",
				s.MeanBatch, formatShares(s.Batches), s.ComputeMs)
			w("Bound: max_queue_delay %s + 3 × %.3f ms = **%.2f ms**; the server-side p99 is %s it.", m.queueDelay, s.ComputeMs, bound,
				map[bool]string{true: "within", false: "above"}[s.ServerP99Ms <= bound])
			if s.LateSends > 0 {
				w(" %d request(s) were sent more than 1 ms late (every worker busy); their latency counts from the schedule.", s.LateSends)
			}
			w("\n\n")
		}
	}
}

// gainCeiling bounds what batching can gain on a CPU-bound server.
type gainCeiling struct {
	naiveMicros, raw1Micros, rawMaxMicros, ceiling float64
}

// batchingCeiling compares the naive server's CPU per inference at conc
// with the same cost when ONNX Runtime's share shrinks to its per-row cost
// at the largest batch: the most batching can save when the server's core
// is the limit.
func (r *results) batchingCeiling(m *model, conc int) (gainCeiling, bool) {
	naive, ok := r.get(pointKey{Model: m.name, Mode: modeNaive, Concurrency: conc})
	if !ok || naive.ServerCPUPer1k <= 0 {
		return gainCeiling{}, false
	}
	_, raw1, ok1 := r.rawAt(m.name, 1)
	_, rawMax, ok2 := r.rawAt(m.name, float64(m.maxBatch))
	if !ok1 || !ok2 {
		return gainCeiling{}, false
	}
	g := gainCeiling{naiveMicros: naive.ServerCPUPer1k * 1000, raw1Micros: raw1 * 1000, rawMaxMicros: rawMax * 1000}
	best := g.naiveMicros - g.raw1Micros + g.rawMaxMicros
	if best <= 0 {
		return gainCeiling{}, false
	}
	g.ceiling = g.naiveMicros / best
	return g, true
}

func preferred(m *model) any {
	if db, ok := m.config["dynamic_batching"].(map[string]any); ok {
		switch p := db["preferred_batch_sizes"].(type) {
		case []any:
			return p
		case string:
			return p // auto
		}
	}
	return "none"
}

// lowLoadSection compares batching on and off at concurrency 1, where
// a batcher that waits for companions costs a lone request its delay.
func (r *results) lowLoadSection(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## Batching at low load (concurrency 1, gRPC)\n\n")
	w("One request in flight: batching can only cost here. With `dispatch: immediate` (the default) an idle instance runs a lone request at once.\n\n")
	w("| model | dispatch | off inf/s | on inf/s | off p50 / p99 ms | on p50 / p99 ms | on p50 / off p50 |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, m := range r.models {
		off, ok1 := r.get(pointKey{Model: m.name, Mode: modeNaive, Concurrency: 1})
		on, ok2 := r.get(pointKey{Model: m.name, Mode: modeGRPC, Concurrency: 1})
		if !ok1 || !ok2 {
			continue
		}
		w("| %s | %s | %s | %s | %.3f / %.3f | %.3f / %.3f | %.2f× |\n", m.name, m.dispatch, thousands(off.Throughput), thousands(on.Throughput),
			off.P50Ms, off.P99Ms, on.P50Ms, on.P99Ms, on.P50Ms/max(off.P50Ms, 1e-9))
	}
	w("\n")
}

// saturationVsBestRaw returns a model's highest gRPC throughput over every
// concurrency measured, and raw ONNX Runtime's best items/s with its batch
// size.
func (r *results) saturationVsBestRaw(model string) (sat float64, satC int, best float64, bestB int, ok bool) {
	for _, p := range r.Points {
		if p.Model != model {
			continue
		}
		switch {
		case p.Mode == modeGRPC && p.Concurrency > 0 && p.Median.Throughput > sat:
			sat, satC = p.Median.Throughput, p.Concurrency
		case p.Mode == modeRaw && p.Median.Throughput > best:
			best, bestB = p.Median.Throughput, p.Batch
		}
	}
	return sat, satC, best, bestB, sat > 0 && best > 0
}

// batchSizeSection sets each auto model's raw ONNX Runtime rate at every
// batch size beside the server's own measurement and the size it chose.
func (r *results) batchSizeSection(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	for _, m := range r.models {
		bs, ok := r.BatchSizes[m.name]
		if !ok {
			continue
		}
		w("## %s: the batch size the server chose against raw ONNX Runtime\n\n", m.name)
		w("`preferred_batch_sizes: auto`: while the version loads, the server times it at each power-of-two batch size (%s in all) and caps batches at the size with the most items per second (a smaller one within 2%% counts as a tie). ",
			time.Duration(bs.TookNS).Round(time.Millisecond))
		w("Raw ONNX Runtime (`cmd/ortbench`) on the same core, for comparison:\n\n")
		w("| batch | raw items/s | share of raw's best | server's measurement items/s | chosen |\n|---:|---:|---:|---:|---|\n")
		_, _, best, _, _ := r.saturationVsBestRaw(m.name)
		for _, t := range bs.Timings {
			rawCell, shareCell := "–", "–"
			if s, ok := r.get(pointKey{Model: m.name, Mode: modeRaw, Batch: t.BatchSize}); ok {
				rawCell = thousands(s.Throughput)
				if best > 0 {
					shareCell = fmt.Sprintf("%.0f%%", 100*s.Throughput/best)
				}
			}
			serverCell := "not reached"
			if t.Runs > 0 {
				serverCell = thousands(t.ItemsPerSecond)
			}
			mark := ""
			if t.BatchSize == bs.Chosen {
				mark = "**◀ chosen**"
			}
			w("| %d | %s | %s | %s | %s |\n", t.BatchSize, rawCell, shareCell, serverCell, mark)
		}
		if sat, satC, best, bestB, ok := r.saturationVsBestRaw(m.name); ok {
			w("\nonnxserve-grpc at saturation: %s inferences/s (concurrency %d) = **%.0f%%** of raw ONNX Runtime at its best batch size (%d, %s items/s).\n",
				thousands(sat), satC, 100*sat/best, bestB, thousands(best))
		}
		w("\n")
	}
}

func (r *results) overheadSection(b *strings.Builder) {
	if !r.hasModel("simple") {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## Server CPU per inference beyond ONNX Runtime (simple)\n\n")
	w("Server CPU per inference minus raw ONNX Runtime's CPU per item at the same mean batch size: the cost of the server itself (protocol, decoding, queueing, batching, encoding, Go runtime).\n\n")
	w("| mode | concurrency | server µs / inference | raw ORT µs / item | beyond ORT µs |\n|---|---:|---:|---:|---:|\n")
	for _, mode := range r.cfg.modes {
		for _, c := range r.cfg.concurrency {
			k := pointKey{Model: "simple", Mode: mode, Concurrency: c}
			s, ok := r.get(k)
			if !ok {
				continue
			}
			over, _ := r.overheadMicros(k)
			_, rawCPU, _ := r.rawAt("simple", max(s.MeanBatch, 1))
			w("| %s | %d | %.1f | %.2f | %.1f |\n", mode, c, s.ServerCPUPer1k*1000, rawCPU*1000, over)
		}
	}
	w("\nAt low concurrency the server idles between requests, and the Go runtime's and the batcher's wake-ups are spread over fewer inferences, so the figure is highest there.\n\n")
}

// costsSection lists the top costs per request, from CPU profiles taken
// at the end of the run.
func (r *results) costsSection(b *strings.Builder) {
	if len(r.Costs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## Where the server's CPU goes, per inference\n\n")
	w("After the measurements, the same server was profiled (Go's CPU profiler, %s each) under the same closed-loop load at concurrency %d. ", suiteProfileFor, profileConcurrency)
	w("Its CPU per inference over each profile's window (from `/proc`) is set against raw ONNX Runtime's CPU per item at the batch size that load gave in the tables above; the difference is broken down by kind of work from the profile. ")
	w("Each sample counts once: memory allocation, garbage collection and socket syscalls wherever they happen, the rest by the nearest function of a known kind (a copy made in onnxserve's decoder counts as the decoder's). ")
	w("The last row is what the Go profile cannot see: the kernel's share of the server's CPU, and ONNX Runtime running slower in the server than alone, its core shared with the network work (the server's compute time per batch, in results.json, runs above the raw baseline's).\n\n")
	w("%s\n", costsMarkdown(r.Costs))
	w("`make bench-profile` writes the full CPU and allocation profiles (top functions, objects per inference) to PROFILE.md.\n\n")
}

func (r *results) ghzSection(b *strings.Builder) {
	if len(r.GhzCommands) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## ghz (simple over gRPC)\n\n")
	w("ghz drives the same server through server reflection, with the request as JSON (`raw_input_contents` in base64) converted to protobuf per call. ")
	w("It has no separate warm-up, so its figures cover its whole run (%s), connection set-up included; the server figures cover the same span. ", r.cfg.warmup+r.cfg.duration)
	w("Numbers in the ghz-grpc rows come from ghz's own report; every other row from `bench/loadgen`.\n\n")
	top := strconv.Itoa(r.topConc())
	if cmd, ok := r.GhzCommands[top]; ok {
		w("Command (concurrency %s; the data file holds one `ModelInferRequest` for `simple`):\n\n```\n%s\n```\n\n", top, cmd)
	}
	w("| concurrency | ghz inf/s | ghz p50 / p99 ms | ghz client cores | loadgen inf/s | loadgen p50 / p99 ms | loadgen client cores | errors (ghz) |\n")
	w("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.cfg.concurrency {
		g, ok1 := r.get(pointKey{Model: "simple", Mode: modeGhz, Concurrency: c})
		l, ok2 := r.get(pointKey{Model: "simple", Mode: modeGRPC, Concurrency: c})
		if !ok1 || !ok2 {
			continue
		}
		w("| %d | %s | %.2f / %.2f | %.2f | %s | %.2f / %.2f | %.2f | %s |\n", c, thousands(g.Throughput), g.P50Ms, g.P99Ms, g.ClientCores,
			thousands(l.Throughput), l.P50Ms, l.P99Ms, l.ClientCores, errorsCell(g))
	}
	w("\nWhere a client's cores read near 1.00 the client's own core, not the server, set the pace.\n\n")
}

// thousands formats v rounded to an integer with comma grouping:
// 25000 -> "25,000".
func thousands(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// driftSection compares each model served with drift monitoring (every row
// sampled) and NaN and range validation on with the same model without,
// over gRPC at driftConcurrency, measured back to back in each repetition.
func (r *results) driftSection(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	var rows []string
	for _, m := range r.models {
		if m.drift == "" {
			continue
		}
		off, ok1 := r.get(pointKey{Model: m.name, Mode: modeGRPC, Concurrency: driftConcurrency})
		on, ok2 := r.get(pointKey{Model: m.name, Mode: modeDrift, Concurrency: driftConcurrency})
		if !ok1 || !ok2 || off.Throughput == 0 {
			continue
		}
		share := on.Throughput / off.Throughput
		verdict := "met"
		if share < targetDriftShare {
			verdict = "**missed**"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %.0f | %.0f | %.3f | %.3f | %.1f%% | %s |", m.name, m.version,
			off.Throughput, on.Throughput, off.ServerCPUPer1k, on.ServerCPUPer1k, 100*share, verdict))
	}
	if len(rows) == 0 {
		return
	}
	w("## Drift monitoring and validation cost\n\n")
	w("The same model over gRPC at concurrency %d, served twice from the same file: plain, and with `drift: {sample: 1.0}` ", driftConcurrency)
	w("and `validation: {nan: count, inf: count, range: profile}` against the version's bundled `profile.json` ")
	w("(every row copied by the drift tap and binned on its goroutine; every value checked on the request path). ")
	w("Target: on keeps at least %.0f%% of the throughput of off.\n\n", 100*targetDriftShare)
	w("| model | version | off inf/s | on inf/s | off server CPU s/1k | on server CPU s/1k | on / off | verdict |\n|---|---|---|---|---|---|---|---|\n")
	for _, row := range rows {
		w("%s\n", row)
	}
	w("\n")
}

// qualitySection compares each model served with the model-quality loop
// on (every answer kept in the prediction store) with the same model
// without it, over gRPC at qualityConcurrency, measured back to back in
// each repetition.
func (r *results) qualitySection(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	var rows, notes []string
	for _, m := range r.models {
		if m.quality == "" {
			continue
		}
		off, ok1 := r.get(pointKey{Model: m.name, Mode: modeQualityOff, Concurrency: qualityConcurrency})
		on, ok2 := r.get(pointKey{Model: m.name, Mode: modeQuality, Concurrency: qualityConcurrency})
		if !ok1 || !ok2 || off.Throughput == 0 {
			continue
		}
		// The verdict takes the median of the pairs' on / off: the two of
		// a pair were measured back to back, so each ratio is free of the
		// machine's drift between pairs, which the ratio of the two medians
		// is not.
		pairs := r.pairedRatios(pointKey{Model: m.name, Mode: modeQualityOff, Concurrency: qualityConcurrency},
			pointKey{Model: m.name, Mode: modeQuality, Concurrency: qualityConcurrency})
		share := medianFloats(slices.Clone(pairs))
		verdict := "met"
		if share < targetQualityShare {
			verdict = "**missed**"
		}
		kept := "–"
		if on.Requests > 0 {
			kept = fmt.Sprintf("%.3f", on.Predictions/float64(on.Requests))
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %.1f%% | %.3f | %.3f | %.1f%% | %s | %s |", m.name, m.version,
			thousands(off.Throughput), thousands(on.Throughput), 100*on.Throughput/off.Throughput, off.ServerCPUPer1k, on.ServerCPUPer1k, 100*share, kept, verdict))
		each := make([]string, len(pairs))
		for i, x := range pairs {
			each[i] = fmt.Sprintf("%.1f%%", 100*x)
		}
		notes = append(notes, fmt.Sprintf("%s: on / off in each pair, in measuring order: %s.", m.name, strings.Join(each, ", ")))
		notes = append(notes, fmt.Sprintf("%s: %s predictions counted against %s inferences answered in the median window; prediction store %.1f MB at its end; %s answers dropped by full tap queues over every window.",
			m.name, thousands(on.Predictions), thousands(float64(on.Requests)), on.StoreBytes/1e6, thousands(on.TapDropped)))
	}
	if len(rows) == 0 {
		return
	}
	w("## Quality monitoring cost\n\n")
	w("The same model over gRPC at concurrency %d, served twice from the same file: without a `monitoring` block (off), ", qualityConcurrency)
	w("and with the bundled one (`task: classification`, its labels file) and `sample: 1.0` (on): every answer's predicted class is read on the request path, ")
	w("counted in `onnxserve_predictions_total` and written to the bbolt prediction store under `--state-dir` by the quality tap. ")
	w("Off and on are measured back to back, %d pairs in each repetition, which of the two goes first alternating from pair to pair. *kept / inference* = growth of `onnxserve_predictions_total` over the window per answered inference. ", qualityPairs)
	w("Target: on keeps at least %.0f%% of the throughput of off, judged by the median of the pairs' on / off (each pair measured back to back); the ratio of the two medians is shown beside it.\n\n", 100*targetQualityShare)
	w("| model | version | off inf/s | on inf/s | ratio of medians | off server CPU s/1k | on server CPU s/1k | on / off, median of pairs | kept / inference | verdict |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, row := range rows {
		w("%s\n", row)
	}
	w("\n")
	for _, n := range notes {
		w("%s\n", n)
	}
	w("\n")
}

// sequencesSection sets Silero VAD v5 served over gRPC streams beside
// ONNX Runtime running the same sequences directly, and reports the
// correctness check of sequence 0.
func (r *results) sequencesSection(b *strings.Builder) {
	ck := r.SequenceCheck
	if ck == nil || ck.Compared == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	raw1, ok1 := r.get(pointKey{Model: vadModel, Mode: modeRaw, Batch: 1})
	rawMax, ok2 := r.get(pointKey{Model: vadModel, Mode: modeRaw, Batch: vadMaxBatch})
	if !ok1 || !ok2 || raw1.Throughput == 0 || rawMax.Throughput == 0 {
		return
	}
	w("## Streaming sequences (Silero VAD v5)\n\n")
	w("%d sequences of %d chunks each (512 samples, 32 ms of 16 kHz audio: %s per sequence), all at once. ",
		ck.Sequences, ck.Chunks, (time.Duration(ck.Chunks) * 32 * time.Millisecond).String())
	w("**Served**: Silero VAD v5 with `sequence_batching` (state `state` → `stateN`, `batch_axis: 1`; `max_batch_size: %d`, one instance, one intra-op thread), ", vadMaxBatch)
	w("each sequence on its own gRPC `ModelStreamInfer` stream with `sequence_id`, `sequence_start` and `sequence_end`, one chunk in flight per sequence, the server keeping the state; ")
	w("once with `dispatch: immediate` (the default) and once with `dispatch: wait`, `max_queue_delay: %s`, `preferred_batch_sizes: [%d]`. ", vadWaitDelay, vadMaxBatch)
	w("The window runs from the first chunk sent to the last answer (after a warm-up of short sequences). ")
	w("**Raw**: `cmd/ortbench --sequence-data` runs the same chunks through ONNX Runtime on the server's core, the client carrying the state: the sequences in groups of the batch size, in lockstep, each chunk's `stateN` fed back as the next chunk's `state`.\n\n")
	w("| raw ONNX Runtime | chunks/s | per run p50 / p99 ms | CPU s/1k chunks |\n|---|---:|---:|---:|\n")
	for _, bs := range vadRawSizes {
		if s, ok := r.get(pointKey{Model: vadModel, Mode: modeRaw, Batch: bs}); ok {
			w("| batch %d | %s | %.3f / %.3f | %.4f |\n", bs, thousands(s.Throughput), s.P50Ms, s.P99Ms, s.ServerCPUPer1k)
		}
	}
	w("\n| served | chunks/s | per chunk p50 / p99 ms | server CPU s/1k chunks | mean batch | × raw at batch 1 | share of raw at batch %d | share of raw at its mean batch |\n", vadMaxBatch)
	w("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	disturbed := false
	for _, v := range vadVariants {
		k := pointKey{Model: vadModel, Mode: v.mode, Concurrency: ck.Sequences}
		s, ok := r.get(k)
		if !ok {
			continue
		}
		atMean := "–"
		if ratio, _, ok := r.vsRaw(k); ok {
			atMean = fmt.Sprintf("%.0f%%", 100*ratio)
		}
		mark := ""
		if p := r.index[k]; p != nil && p.Disturbed {
			mark, disturbed = " †", true
		}
		w("| %s%s | %s | %.2f / %.2f | %.4f | %.2f | %.2f× | %.0f%% | %s |\n", v.mode, mark, thousands(s.Throughput), s.P50Ms, s.P99Ms,
			s.ServerCPUPer1k, s.MeanBatch, s.Throughput/raw1.Throughput, 100*s.Throughput/rawMax.Throughput, atMean)
	}
	if disturbed {
		w("\n† every repetition of the row was disturbed by other processes: read it as a lower bound.\n")
	}
	w("\nCorrectness: sequence 0's %d speech probabilities from every raw batch size and every served run (%d runs in all) ", ck.Chunks, ck.Compared)
	w("were checked against raw ONNX Runtime at batch size 1, and the run fails beyond %g: the largest difference was %g; %d of %d values bit-identical.\n\n",
		vadTolerance, ck.MaxAbsDiff, ck.Identical, ck.Values)
	if len(ck.Commands) > 0 {
		w("```\n%s\n```\n\n", strings.Join(ck.Commands, "\n"))
	}
}

// pairedRatios returns b's throughput over a's in each repetition where
// both were measured (their samples in measuring order).
func (r *results) pairedRatios(a, b pointKey) []float64 {
	pa, pb := r.index[a], r.index[b]
	if pa == nil || pb == nil {
		return nil
	}
	var out []float64
	for i := range min(len(pa.Samples), len(pb.Samples)) {
		if x, y := pa.Samples[i].Throughput, pb.Samples[i].Throughput; x > 0 {
			out = append(out, y/x)
		}
	}
	return out
}
