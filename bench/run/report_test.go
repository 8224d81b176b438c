package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestMedian(t *testing.T) {
	ss := []sample{
		{Throughput: 300, P99Ms: 9, Errors: 1, ErrorSamples: map[string]int64{"x": 1}, Batches: []batchShare{{0, 1, 100}}},
		{Throughput: 100, P99Ms: 1, Batches: []batchShare{{0, 1, 50}}},
		{Throughput: 200, P99Ms: 5, Errors: 2, ErrorSamples: map[string]int64{"x": 2}, Batches: []batchShare{{0, 1, 75}}},
	}
	m := median(ss)
	if m.Throughput != 200 || m.P99Ms != 5 {
		t.Fatalf("median throughput %v p99 %v, want 200 and 5", m.Throughput, m.P99Ms)
	}
	if m.Errors != 3 || m.ErrorSamples["x"] != 3 {
		t.Fatalf("errors %d %v: every repetition's errors must be kept", m.Errors, m.ErrorSamples)
	}
	if m.Batches[0].Percent != 75 {
		t.Fatalf("distribution of the median-throughput repetition expected, got %v", m.Batches)
	}
	if even := median(ss[:2]); even.Throughput != 200 {
		t.Fatalf("median of two = %v, want their mean 200", even.Throughput)
	}
}

func testResults() *results {
	c := &config{concurrency: []int{1, 8}, batchingConcurrency: []int{1, 64}, modes: []string{modeNaive, modeGRPC, modeJSON, modeBinary}, reps: 1}
	m := &model{name: "simple", naive: "simple_nobatch", version: "1", maxBatch: 8, queueDelay: 500 * time.Microsecond,
		rawSizes: []int{1, 2, 4, 8}, config: map[string]any{}}
	r := newResults(c, []*model{m})
	for b, ips := range map[int]float64{1: 100_000, 2: 180_000, 4: 400_000, 8: 800_000} {
		r.add(pointKey{Model: "simple", Mode: modeRaw, Batch: b}, sample{Throughput: ips, ServerCPUPer1k: 1 / ips * 1000, MeanBatch: float64(b)})
	}
	r.add(pointKey{Model: "simple", Mode: modeGRPC, Concurrency: 1}, sample{Throughput: 5_000, MeanBatch: 1, P99Ms: 0.5})
	r.add(pointKey{Model: "simple", Mode: modeGRPC, Concurrency: 8}, sample{Throughput: 30_000, MeanBatch: 3, ServerCPUPer1k: 0.03, Requests: 1000, P99Ms: 2})
	r.add(pointKey{Model: "simple", Mode: modeNaive, Concurrency: 8}, sample{Throughput: 10_000, MeanBatch: 1, ServerCPUPer1k: 0.05, Requests: 1000})
	r.add(pointKey{Model: "simple", Mode: modeBinary, Concurrency: 8}, sample{Throughput: 27_000, MeanBatch: 3})
	r.add(pointKey{Model: "simple", Mode: modeGRPC, Concurrency: 64}, sample{Throughput: 60_000, MeanBatch: 8})
	r.add(pointKey{Model: "simple", Mode: modeNaive, Concurrency: 64}, sample{Throughput: 10_000, MeanBatch: 1})
	r.add(pointKey{Model: "simple", Mode: modeGRPC, Rate: 30_000}, sample{Throughput: 30_000, P99Ms: 3, ServerP99Ms: 0.7, ComputeMs: 0.1})
	r.HalfRate["simple"] = 30_000
	return r
}

func TestRawInterpolation(t *testing.T) {
	r := testResults()
	tests := []struct {
		b, want float64
	}{{1, 100_000}, {3, 290_000}, {8, 800_000}, {0.5, 100_000}, {20, 800_000}}
	for _, tt := range tests {
		got, _, ok := r.rawAt("simple", tt.b)
		if !ok || math.Abs(got-tt.want) > 1e-6 {
			t.Errorf("rawAt(%v) = %v, want %v", tt.b, got, tt.want)
		}
	}
	if _, _, ok := r.rawAt("other", 1); ok {
		t.Error("rawAt of an unmeasured model")
	}
}

func TestTargets(t *testing.T) {
	r := testResults()
	v, b, ok := r.vsRaw(pointKey{Model: "simple", Mode: modeGRPC, Concurrency: 8})
	if !ok || b != 3 || math.Abs(v-30_000.0/290_000) > 1e-9 {
		t.Fatalf("vsRaw = %v at batch %v", v, b)
	}
	// 30 µs per inference minus raw's CPU per item at batch 3, halfway
	// between batch 2 (1/180,000 s) and batch 4 (1/400,000 s).
	over, ok := r.overheadMicros(pointKey{Model: "simple", Mode: modeGRPC, Concurrency: 8})
	if !ok || math.Abs(over-(30-(1e6/180_000+1e6/400_000)/2)) > 0.01 {
		t.Fatalf("overhead %v µs", over)
	}
	verdicts := map[string]string{}
	for _, tg := range r.targets() {
		verdicts[tg.what] = verdict(tg)
	}
	want := map[string]string{
		"simple over gRPC at concurrency 8 ≥ 5× naive (batching off)":                                               "**not met**",
		"simple over gRPC at concurrency 8 ≥ 25,000 inferences/s on one server core":                                "**met**",
		"HTTP binary within 80% of gRPC (simple, concurrency 8)":                                                    "**met**",
		"batching on ≥ 5× batching off, simple over gRPC at concurrency 64":                                         "**met**",
		"simple p99 ≤ max_queue_delay + 3 × one batch's compute time at half the peak rate (30,000/s), server-side": "**met**",
		"server CPU per simple inference beyond ONNX Runtime < 20 µs (gRPC, concurrency 8)":                         "**not met**",
	}
	for what, v := range want {
		if verdicts[what] != v {
			t.Errorf("%q: %q, want %q (all: %v)", what, verdicts[what], v, verdicts)
		}
	}
}

func TestBatchingCeiling(t *testing.T) {
	r := testResults()
	// Naive: 50 µs per inference at concurrency 8; raw costs 10 µs per
	// row alone and 1.25 µs per row in a batch of 8, so at best 41.25 µs.
	g, ok := r.batchingCeiling(r.models[0], 8)
	if !ok || math.Abs(g.ceiling-50/41.25) > 1e-9 {
		t.Fatalf("ceiling %+v", g)
	}
	if _, ok := r.batchingCeiling(r.models[0], 256); ok {
		t.Fatal("a ceiling from an unmeasured point")
	}
}

func TestMarkdownAndPlots(t *testing.T) {
	r := testResults()
	dir := t.TempDir()
	plots, err := r.plot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(plots["simple"]) != 2 {
		t.Fatalf("plots %v, want throughput and p99", plots)
	}
	for _, p := range plots["simple"] {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil || st.Size() == 0 {
			t.Fatalf("plot %s: %v", p, err)
		}
	}
	md := r.markdown(plots)
	for _, want := range []string{"## Targets", "## simple", "| onnxserve-grpc | 8 | 30,000 |", "0.10 (batch 3.0)", "## Batching", "simple_p99.png"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.6: "1,000", 25000: "25,000", 1234567: "1,234,567", -4321: "-4,321"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestGhzSample(t *testing.T) {
	rep := ghzReport{Rps: 1234.5, Average: 2_500_000, Total: 3_000_000_000,
		StatusCodes: map[string]int64{"OK": 3000, "Unavailable": 4}}
	rep.Latency = append(rep.Latency, struct {
		Percentage int   `json:"percentage"`
		Latency    int64 `json:"latency"`
	}{99, 7_000_000})
	s := ghzSample(rep)
	if s.Throughput != 1234.5 || s.MeanMs != 2.5 || s.P99Ms != 7 || s.Requests != 3000 || s.Errors != 4 || s.Seconds != 3 {
		t.Fatalf("sample %+v", s)
	}
}

func TestRepositoryVariants(t *testing.T) {
	ms, err := loadModels(filepath.Join("..", "..", "models"), "", []string{"simple", "classifier"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeRepository(dir, ms); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		on, err := os.ReadFile(filepath.Join(dir, m.name, "config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		off, err := os.ReadFile(filepath.Join(dir, m.naive, "config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(on), "dynamic_batching:") || strings.Contains(string(off), "dynamic_batching") {
			t.Errorf("%s: batching must be on in %s and off in %s", m.name, m.name, m.naive)
		}
		for _, c := range [][]byte{on, off} {
			if !strings.Contains(string(c), "intra_op_threads: 1") {
				t.Errorf("%s: config lacks intra_op_threads: 1:\n%s", m.name, c)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, m.naive, m.version, "model.onnx")); err != nil {
			t.Errorf("%s: %v", m.naive, err)
		}
	}
	for _, m := range ms {
		for _, v := range []string{m.name, m.naive, m.drift} {
			if v == "" {
				continue
			}
			if b, err := os.ReadFile(filepath.Join(dir, v, "config.yaml")); err != nil || strings.Contains(string(b), "monitoring") {
				t.Errorf("%s: monitoring must be off in every copy but the quality one (%v):\n%s", v, err, b)
			}
		}
	}
	if ms[0].quality != "" {
		t.Errorf("simple has no monitoring block, yet a quality copy %q", ms[0].quality)
	}
	q := ms[1]
	if q.quality != "classifier_quality" {
		t.Fatalf("classifier's quality copy %q", q.quality)
	}
	var cfg struct {
		Monitoring map[string]any `yaml:"monitoring"`
		Instances  map[string]any `yaml:"instances"`
	}
	b, err := os.ReadFile(filepath.Join(dir, q.quality, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Monitoring["task"] != "classification" || fmt.Sprint(cfg.Monitoring["sample"]) != "1" || cfg.Monitoring["labels"] != "labels.txt" ||
		cfg.Instances["intra_op_threads"] != 1 {
		t.Errorf("quality copy's config:\n%s", b)
	}
	labels, err := os.ReadFile(filepath.Join(dir, q.quality, "labels.txt"))
	bundled, err2 := os.ReadFile(filepath.Join("..", "..", "models", "classifier", "labels.txt"))
	if err != nil || err2 != nil || string(labels) != string(bundled) {
		t.Errorf("quality copy's labels.txt differs from the bundled one (%v, %v)", err, err2)
	}
	if _, err := os.Stat(filepath.Join(dir, q.quality, q.version, "model.onnx")); err != nil {
		t.Error(err)
	}
	if got := servedNames(ms); !slices.Contains(got, "classifier_quality") || !slices.Contains(got, "classifier_drift") {
		t.Errorf("served names %v", got)
	}
	if ms[1].version != "2" || ms[1].queueDelay != time.Millisecond || ms[0].queueDelay != 500*time.Microsecond {
		t.Errorf("classifier version %s, delays %v %v", ms[1].version, ms[0].queueDelay, ms[1].queueDelay)
	}
}

func TestBatchingTargetsAndSections(t *testing.T) {
	r := testResults()
	r.models[0].dispatch = "immediate"
	// testResults has batching on at concurrency 1: 5,000/s, p99 0.5 ms.
	r.add(pointKey{Model: "simple", Mode: modeNaive, Concurrency: 1}, sample{Throughput: 6_000, P50Ms: 0.14, P99Ms: 0.3})
	r.BatchSizes["simple"] = batchSizes{Chosen: 4, TookNS: int64(20 * time.Millisecond), Timings: []batchSizeTiming{
		{BatchSize: 1, Runs: 64, ItemsPerSecond: 90_000}, {BatchSize: 2, Runs: 64, ItemsPerSecond: 170_000},
		{BatchSize: 4, Runs: 64, ItemsPerSecond: 390_000}, {BatchSize: 8, Runs: 0},
	}}
	verdicts := map[string]string{}
	for _, tg := range r.targets() {
		verdicts[tg.what] = verdict(tg)
	}
	want := map[string]string{
		"simple at concurrency 1: batching on p50 within 10% of batching off": "**met**",
		// On / off is 5,000 / 6,000 at concurrency 1: below 1.
		"simple over gRPC: batching on ≥ batching off in throughput at every concurrency of [1 64]": "**not met**",
	}
	for what, v := range want {
		if verdicts[what] != v {
			t.Errorf("%q: %q, want %q (all: %v)", what, verdicts[what], v, verdicts)
		}
	}
	md := r.markdown(nil)
	for _, line := range []string{
		"| simple | immediate | 6,000 | 5,000 | 0.140 / 0.300 | 0.000 / 0.500 | 0.00× |",
		"| 4 | 400,000 | 50% | 390,000 | **◀ chosen** |",
		"| 8 | 800,000 | 100% | not reached |  |",
		"= **8%** of raw ONNX Runtime at its best batch size (8, 800,000 items/s)",
	} {
		if !strings.Contains(md, line) {
			t.Errorf("report lacks %q", line)
		}
	}
}

func TestABReport(t *testing.T) {
	c := &config{serverBin: "/x/onnxserve-old", abBin: "/x/onnxserve-new", abArgs: []string{"--flag"}, reps: 3}
	p := &abPoint{model: "simple", conc: 128,
		a: []sample{{Throughput: 100, ServerCPUPer1k: 0.02}, {Throughput: 300, ServerCPUPer1k: 0.01}, {Throughput: 200, ServerCPUPer1k: 0.03}},
		b: []sample{{Throughput: 210}, {Throughput: 190}, {Throughput: 230}}}
	got := abReport(c, []*abPoint{p}, 90*time.Second)
	for _, want := range []string{
		"| simple | 128 | 200 | 210 | 105.0% | 0.0200 | 0.0000 | 100, 300, 200 | 210, 190, 230 |",
		"A: `onnxserve-old`; B: `onnxserve-new --flag`. 3 repetitions",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	sides := []*abSide{{label: "A"}, {label: "B"}}
	if o := abOrder(sides, 1); o[0].label != "B" {
		t.Errorf("odd repetition starts with %s, want B", o[0].label)
	}
	if o := abOrder(sides, 2); o[0].label != "A" {
		t.Errorf("even repetition starts with %s, want A", o[0].label)
	}
	if m := medianOf([]sample{{Throughput: 1}, {Throughput: 4}}, throughputOf); m != 2.5 {
		t.Errorf("median of 1 and 4: %v", m)
	}
}

func TestQualitySection(t *testing.T) {
	c := &config{concurrency: []int{128}, batchingConcurrency: []int{128}, modes: []string{modeGRPC}, reps: 2}
	m := &model{name: "classifier", naive: "classifier_nobatch", quality: "classifier_quality", version: "2", config: map[string]any{}}
	r := newResults(c, []*model{m})
	off := pointKey{Model: "classifier", Mode: modeQualityOff, Concurrency: qualityConcurrency}
	on := pointKey{Model: "classifier", Mode: modeQuality, Concurrency: qualityConcurrency}
	r.add(off, sample{Throughput: 40_000, ServerCPUPer1k: 0.020, Requests: 80_000})
	r.add(on, sample{Throughput: 37_000, ServerCPUPer1k: 0.024, Requests: 74_000, Predictions: 73_990, TapDropped: 2, StoreBytes: 9_500_000})
	r.add(off, sample{Throughput: 42_000, ServerCPUPer1k: 0.020, Requests: 84_000})
	r.add(on, sample{Throughput: 39_000, ServerCPUPer1k: 0.024, Requests: 78_000, Predictions: 78_010, TapDropped: 1, StoreBytes: 19_500_000})
	var b strings.Builder
	r.qualitySection(&b)
	md := b.String()
	// Medians 41,000 and 38,000: 92.7%; pairs 92.5% and 92.9%, median
	// 92.7%, below the 95% target.
	for _, want := range []string{
		"## Quality monitoring cost",
		"| classifier | 2 | 41,000 | 38,000 | 92.7% | 0.020 | 0.024 | 92.7% | 1.000 | **missed** |",
		"classifier: on / off in each pair, in measuring order: 92.5%, 92.9%.",
		"classifier: 76,000 predictions counted against 76,000 inferences answered in the median window; prediction store 14.5 MB at its end; 3 answers dropped",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
	// A third pair (off 40,000, on 40,400: 101%) moves on's median to
	// 39,000 (ratio of medians 95.1%) and the pairs' median to 92.9%: the
	// verdict follows the pairs.
	r.add(off, sample{Throughput: 40_000, Requests: 80_000})
	r.add(on, sample{Throughput: 40_400, Requests: 80_800, Predictions: 80_800})
	b.Reset()
	r.qualitySection(&b)
	if want := "| 40,000 | 39,000 | 97.5% | 0.020 | 0.024 | 92.9% | 1.000 | **missed** |"; !strings.Contains(b.String(), want) {
		t.Errorf("after a third repetition, no %q:\n%s", want, b.String())
	}
	// A fourth (101% again) lifts the pairs' median to 96.95%: met.
	r.add(off, sample{Throughput: 40_000, Requests: 80_000})
	r.add(on, sample{Throughput: 40_400, Requests: 80_800, Predictions: 80_800})
	b.Reset()
	r.qualitySection(&b)
	if want := "| 96.9% | 1.000 | met |"; !strings.Contains(b.String(), want) {
		t.Errorf("after a fourth repetition, no %q:\n%s", want, b.String())
	}
	b.Reset()
	newResults(c, []*model{{name: "simple"}}).qualitySection(&b)
	if b.Len() != 0 {
		t.Errorf("a section without a quality copy: %q", b.String())
	}
}

func TestDriftSection(t *testing.T) {
	c := &config{concurrency: []int{128}, batchingConcurrency: []int{128}, modes: []string{modeGRPC}, reps: 1}
	m := &model{name: "classifier", drift: "classifier_drift", quality: "classifier_quality", version: "2", config: map[string]any{}}
	r := newResults(c, []*model{m})
	r.add(pointKey{Model: "classifier", Mode: modeGRPC, Concurrency: driftConcurrency}, sample{Throughput: 40_000, ServerCPUPer1k: 0.020})
	r.add(pointKey{Model: "classifier", Mode: modeDrift, Concurrency: driftConcurrency}, sample{Throughput: 39_000, ServerCPUPer1k: 0.021})
	// The quality copy's figures must not leak into the drift row.
	r.add(pointKey{Model: "classifier", Mode: modeQualityOff, Concurrency: qualityConcurrency}, sample{Throughput: 40_000})
	r.add(pointKey{Model: "classifier", Mode: modeQuality, Concurrency: qualityConcurrency}, sample{Throughput: 20_000})
	var b strings.Builder
	r.driftSection(&b)
	if want := "| classifier | 2 | 40000 | 39000 | 0.020 | 0.021 | 97.5% | met |"; !strings.Contains(b.String(), want) {
		t.Errorf("drift section lacks %q:\n%s", want, b.String())
	}
}
