package main

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name, line string
		want       time.Duration
		wantErr    bool
	}{
		{"plain", "4242 (onnxserve) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 31 0 0 20 0 9 0 100 0 0", 281 * clockTick, false},
		{"name with spaces and parens", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 12 3 0 0 20 0 1 0 5 0 0", 15 * clockTick, false},
		{"truncated", "7 (x) R 1 2 3", 0, true},
		{"no command", "garbage", 0, true},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 ab 3 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat(tt.line)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseMachineBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	got, err := parseMachineBusy("cpu  100 2 30 5000 70 4 5 6 0 0\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := 147 * clockTick; got != want {
		t.Fatalf("got %v, want %v (idle and iowait excluded)", got, want)
	}
	if _, err := parseMachineBusy("cpu0 1 2 3 4 5 6 7 8\n"); err == nil {
		t.Fatal("a per-CPU line was taken for the total")
	}
}

const exposition = `# HELP onnxserve_batch_size Rows per executed batch.
# TYPE onnxserve_batch_size histogram
onnxserve_batch_size_bucket{model="simple",version="1",le="1"} 10
onnxserve_batch_size_bucket{model="simple",version="1",le="2"} 10
onnxserve_batch_size_bucket{model="simple",version="1",le="4"} 70
onnxserve_batch_size_bucket{model="simple",version="1",le="8"} 100
onnxserve_batch_size_bucket{model="simple",version="1",le="+Inf"} 100
onnxserve_batch_size_sum{model="simple",version="1"} 420
onnxserve_batch_size_count{model="simple",version="1"} 100
onnxserve_batch_size_count{model="simple_nobatch",version="1"} 7
onnxserve_batch_sizes_total{model="simple",version="1"} 99
onnxserve_compute_duration_seconds_sum{model="simple",version="1"} 0.5
onnxserve_compute_duration_seconds_count{model="simple",version="1"} 100
onnxserve_queue_duration_seconds_sum{model="simple",version="1"} 9
`

func TestParseHistograms(t *testing.T) {
	hs, err := parseHistograms(strings.NewReader(exposition), famBatchSize, famCompute)
	if err != nil {
		t.Fatal(err)
	}
	bs := hs[seriesKey{famBatchSize, "simple", "1"}]
	if bs.count != 100 || bs.sum != 420 || len(bs.bounds) != 5 || !math.IsInf(bs.bounds[4], 1) || bs.counts[2] != 70 {
		t.Fatalf("batch size histogram %+v", bs)
	}
	if got := hs[seriesKey{famBatchSize, "simple_nobatch", "1"}].count; got != 7 {
		t.Fatalf("second model's count %v, want 7", got)
	}
	if got := hs[seriesKey{famCompute, "simple", "1"}].mean(); got != 0.005 {
		t.Fatalf("compute mean %v, want 0.005", got)
	}
	if len(hs) != 3 {
		t.Fatalf("%d series, want 3: others must be ignored (%v)", len(hs), hs)
	}
}

func TestHistogramDeltaAndDistribution(t *testing.T) {
	before, err := parseHistograms(strings.NewReader(exposition), famBatchSize)
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseHistograms(strings.NewReader(strings.NewReplacer(
		`le="1"} 10`, `le="1"} 10`,
		`le="2"} 10`, `le="2"} 10`,
		`le="4"} 70`, `le="4"} 100`,
		`le="8"} 100`, `le="8"} 180`,
		`le="+Inf"} 100`, `le="+Inf"} 180`,
		`_sum{model="simple",version="1"} 420`, `_sum{model="simple",version="1"} 960`,
		`_count{model="simple",version="1"} 100`, `_count{model="simple",version="1"} 180`,
	).Replace(exposition)), famBatchSize)
	if err != nil {
		t.Fatal(err)
	}
	k := seriesKey{famBatchSize, "simple", "1"}
	d := after[k].sub(before[k])
	if d.count != 80 || d.mean() != 6.75 {
		t.Fatalf("delta count %v mean %v, want 80 and 6.75", d.count, d.mean())
	}
	got := formatShares(distribution(d))
	if want := "3-4: 38%, 5-8: 62%"; got != want {
		t.Fatalf("distribution %q, want %q", got, want)
	}
	if distribution(histogram{}) != nil {
		t.Fatal("an empty histogram has a distribution")
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := histogram{
		bounds: []float64{0.001, 0.002, 0.004, math.Inf(1)},
		counts: []float64{50, 90, 99, 100},
		count:  100,
	}
	tests := []struct{ q, want float64 }{
		{0.25, 0.0005}, // halfway into the first bucket, which starts at 0
		{0.5, 0.001},   // exactly at a bound
		{0.7, 0.0015},  // halfway through (1ms, 2ms]
		{0.99, 0.004},  // the last finite bound
		{0.999, 0.004}, // inside +Inf: the highest finite bound
	}
	for _, tt := range tests {
		if got := h.quantile(tt.q); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if (histogram{}).quantile(0.5) != 0 {
		t.Error("empty histogram has a quantile")
	}
}

func TestParseHistogramsSumsProtocols(t *testing.T) {
	text := `onnxserve_request_duration_seconds_bucket{model="m",protocol="grpc",version="1",le="0.001"} 3
onnxserve_request_duration_seconds_bucket{model="m",protocol="grpc",version="1",le="+Inf"} 4
onnxserve_request_duration_seconds_sum{model="m",protocol="grpc",version="1"} 0.01
onnxserve_request_duration_seconds_count{model="m",protocol="grpc",version="1"} 4
onnxserve_request_duration_seconds_bucket{model="m",protocol="http",version="1",le="0.001"} 1
onnxserve_request_duration_seconds_bucket{model="m",protocol="http",version="1",le="+Inf"} 6
onnxserve_request_duration_seconds_sum{model="m",protocol="http",version="1"} 0.02
onnxserve_request_duration_seconds_count{model="m",protocol="http",version="1"} 6
`
	hs, err := parseHistograms(strings.NewReader(text), famRequest)
	if err != nil {
		t.Fatal(err)
	}
	h := hs[seriesKey{famRequest, "m", "1"}]
	if h.count != 10 || len(h.bounds) != 2 || h.counts[0] != 4 || h.counts[1] != 10 || math.Abs(h.sum-0.03) > 1e-12 {
		t.Fatalf("summed histogram %+v", h)
	}
}

func TestLatencyBuckets(t *testing.T) {
	prev := 0.0
	for _, f := range strings.Split(latencyBuckets(), ",") {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= prev {
			t.Fatalf("bound %q after %v: the server needs increasing positive seconds", f, prev)
		}
		prev = v
	}
}

func TestParseValues(t *testing.T) {
	const text = `# TYPE onnxserve_predictions_total counter
onnxserve_predictions_total{model="classifier_quality",predicted="cat",version="2"} 30
onnxserve_predictions_total{model="classifier_quality",predicted="dog",version="2"} 12
onnxserve_predictions_total{model="classifier",predicted="dog",version="2"} 5
onnxserve_predictions_totalx{model="classifier_quality",version="2"} 1000
onnxserve_tap_dropped_total{tap="quality"} 3
onnxserve_tap_dropped_total{tap="drift"} 4
onnxserve_prediction_store_bytes 123456
`
	got, err := parseValues(strings.NewReader(text), famPredictions, famTapDropped, famStoreBytes)
	if err != nil {
		t.Fatal(err)
	}
	want := map[seriesKey]float64{
		{famPredictions, "classifier_quality", "2"}: 42,
		{famPredictions, "classifier", "2"}:         5,
		{name: famTapDropped}:                       7,
		{name: famStoreBytes}:                       123456,
	}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%+v = %v, want %v", k, got[k], v)
		}
	}
	if _, err := parseValues(strings.NewReader("onnxserve_prediction_store_bytes x\n"), famStoreBytes); err == nil {
		t.Error("a sample without a number accepted")
	}
}
