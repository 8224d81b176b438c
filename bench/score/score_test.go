package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, c *config)
	}{
		{name: "defaults", check: func(t *testing.T, c *config) {
			if c.reps != 5 || c.cpu != 1 || c.out != "bench/SCORE.md" || len(c.rssRows) != 2 || c.rssRows[1] != 1000000 || c.baseline != "" {
				t.Errorf("defaults %+v", c)
			}
			if !strings.HasPrefix(c.command, ".cache/bin/scorebench") {
				t.Errorf("command %q", c.command)
			}
		}},
		{name: "quick", args: []string{"--quick"}, check: func(t *testing.T, c *config) {
			if c.reps != 1 || c.clsRows != 100000 || c.rssRows[0] != 20000 {
				t.Errorf("quick %+v", c)
			}
		}},
		{name: "only", args: []string{"--only", "ocr_cls, classifier"}, check: func(t *testing.T, c *config) {
			if len(c.only) != 2 || c.only[0] != "ocr_cls" || c.only[1] != "classifier" {
				t.Errorf("only %q", c.only)
			}
		}},
		{name: "command given", args: []string{"--command", "make bench-score"}, check: func(t *testing.T, c *config) {
			if c.command != "make bench-score" {
				t.Errorf("command %q", c.command)
			}
		}},
		{name: "zero reps", args: []string{"--reps", "0"}, wantErr: true},
		{name: "file smaller than two batches", args: []string{"--ocr-rows", "20"}, wantErr: true},
		{name: "bad rss list", args: []string{"--rss-rows", "10,x"}, wantErr: true},
		{name: "stray argument", args: []string{"extra"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestParseCPUBusy(t *testing.T) {
	stat := []byte("cpu  10 20 30 400 50 6 7 8 0 0\ncpu0 1 2 3 100 5 6 7 8 0 0\ncpu1 100 1 10 5000 9 2 3 4 0 0\nintr 1 2\n")
	got, err := parseCPUBusy(stat, 1)
	if err != nil || got != 100+1+10+2+3+4 {
		t.Errorf("cpu1 busy = %d, %v; want 120 (user nice system irq softirq steal)", got, err)
	}
	if _, err := parseCPUBusy(stat, 7); err == nil {
		t.Error("a CPU missing from /proc/stat was accepted")
	}
}

func TestSummaryRate(t *testing.T) {
	ok := []byte("scored ocr_cls v1: 5000 rows, 0 errors, 1300 rows/s, 3.8s (batch 16, 1 workers × 1 threads) → out.jsonl\n")
	if r, err := summaryRate(ok); err != nil || r != 1300 {
		t.Errorf("summaryRate = %v, %v", r, err)
	}
	if _, err := summaryRate([]byte("scored m v1: 90 rows, 10 errors, 5 rows/s, 1s (…)\n")); err == nil {
		t.Error("a run with bad rows was accepted")
	}
	if _, err := summaryRate([]byte("onnxserve score: no such file\n")); err == nil {
		t.Error("output without a summary was accepted")
	}
}

func TestWriteNPY(t *testing.T) {
	var b bytes.Buffer
	if err := writeNPY(&b, 3, []int{2, 2}, unitValues(1)); err != nil {
		t.Fatal(err)
	}
	out := b.Bytes()
	if !bytes.HasPrefix(out, []byte("\x93NUMPY\x01\x00")) {
		t.Fatalf("no NPY 1.0 preamble: %q", out[:8])
	}
	hlen := int(binary.LittleEndian.Uint16(out[8:10]))
	if (10+hlen)%64 != 0 || out[10+hlen-1] != '\n' {
		t.Errorf("header of %d bytes: data does not start at a multiple of 64 after a newline", hlen)
	}
	dict := string(out[10 : 10+hlen])
	if !strings.Contains(dict, "'descr': '<f4'") || !strings.Contains(dict, "'shape': (3, 2, 2)") || !strings.Contains(dict, "'fortran_order': False") {
		t.Errorf("dict %q", dict)
	}
	if len(out) != 10+hlen+3*4*4 {
		t.Errorf("%d bytes, want header and 12 float32", len(out))
	}
	for i := 10 + hlen; i < len(out); i += 4 {
		if v := math.Float32frombits(binary.LittleEndian.Uint32(out[i:])); v < 0 || v >= 1 {
			t.Errorf("value %v outside [0, 1)", v)
		}
	}
	if h := npyHeader([]string{"5"}); !bytes.Contains(h, []byte("(5,)")) {
		t.Errorf("one-dimensional shape %q, want a Python one-tuple", h)
	}
}

func TestWriteJSONL(t *testing.T) {
	var b bytes.Buffer
	if err := writeJSONL(&b, 2, 3, featureValues(1)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("jsonl %q", b.String())
	}
	for _, l := range lines {
		var v struct{ INPUT []float32 }
		if err := json.Unmarshal([]byte(l), &v); err != nil || len(v.INPUT) != 3 {
			t.Errorf("line %q: %v, %d values", l, err, len(v.INPUT))
		}
	}
}

func TestWriteCSV(t *testing.T) {
	var b bytes.Buffer
	if err := writeCSV(&b, 4, 3, featureValues(1)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 5 || lines[0] != "f0,f1,f2" {
		t.Fatalf("csv %q", b.String())
	}
	for _, l := range lines[1:] {
		if n := len(strings.Split(l, ",")); n != 3 {
			t.Errorf("line %q has %d fields", l, n)
		}
	}
	// The same seed gives the same values as text and as NPY.
	var n bytes.Buffer
	if err := writeNPY(&n, 4, []int{3}, featureValues(1)); err != nil {
		t.Fatal(err)
	}
	first := strings.Split(lines[1], ",")[0]
	data := n.Bytes()[len(npyHeader([]string{"4", "3"})):]
	if got := math.Float32frombits(binary.LittleEndian.Uint32(data)); first != strconv.FormatFloat(float64(got), 'g', -1, 32) {
		t.Errorf("first value %s in CSV, %v in NPY", first, got)
	}
}

// tc is a small throughput comparison for the tests below.
var tc = tcase{Model: "m", Batch: 10, In: "npy", Out: "jsonl", Rows: 1010, RowBytes: 4000, Headline: true}

// mkRep is a repetition where raw runs rawRate rows/s and score's whole
// file takes fullWall seconds after a one-batch run of 0.1 s.
func mkRep(rawRate, fullWall, others float64) rep {
	return rep{
		Raw:   procRun{Rate: rawRate, CPURate: rawRate},
		Small: procRun{Wall: 0.1, CPU: 0.1},
		Full:  procRun{Wall: fullWall, CPU: fullWall, Others: others},
		// Before took twice as long for its rows.
		BaseSmall: procRun{Wall: 0.1, CPU: 0.1},
		BaseFull:  procRun{Wall: 0.1 + 2*(fullWall-0.1), CPU: 0.1 + 2*(fullWall-0.1)},
		Disturbed: others > 0.1,
	}
}

func TestSummarize(t *testing.T) {
	cr := caseResult{Case: tc, Reps: []rep{mkRep(1000, 1.1, 0), mkRep(1000, 1.35, 0.5), mkRep(1100, 1.2, 0)}}
	s := summarize(cr)
	if s.Used != 2 || s.Total != 3 {
		t.Errorf("used %d of %d, want the 2 undisturbed of 3", s.Used, s.Total)
	}
	// Marginal rates: 1000 rows over 1.0 s and 1.1 s.
	if want := (1000.0 + 1000/1.1) / 2; math.Abs(s.Score-want) > 1e-9 {
		t.Errorf("score %v, want the median marginal rate %v", s.Score, want)
	}
	if want := (1.0 + (1000/1.1)/1100) / 2; math.Abs(s.Ratio-want) > 1e-9 || math.Abs(s.CPURatio-want) > 1e-9 {
		t.Errorf("ratios %v and %v, want %v", s.Ratio, s.CPURatio, want)
	}
	if math.Abs(s.Score/s.Base-2) > 1e-9 {
		t.Errorf("after ÷ before %v, want 2", s.Score/s.Base)
	}
	if want := 1e6/s.Score - 1e6/s.Raw; s.Own != want {
		t.Errorf("own %v µs, want %v", s.Own, want)
	}
	all := summarize(caseResult{Case: tc, Reps: []rep{mkRep(1000, 1.1, 0.5), mkRep(1000, 1.3, 0.6)}})
	if all.Used != 2 {
		t.Errorf("every repetition disturbed: used %d, want all 2", all.Used)
	}
}

func TestRSSFlat(t *testing.T) {
	tests := []struct {
		peaks []int64 // KiB
		want  bool
	}{
		{[]int64{80 << 10, 87 << 10}, true},   // +7 MiB
		{[]int64{80 << 10, 89 << 10}, false},  // +9 MiB, 11%
		{[]int64{200 << 10, 218 << 10}, true}, // +9%
		{[]int64{90 << 10, 160 << 10}, false}, // the Parquet writer before
		{[]int64{100 << 10, 90 << 10}, true},  // smaller is flat
		{[]int64{100 << 10}, true},
	}
	for _, tt := range tests {
		if got := rssFlat(tt.peaks); got != tt.want {
			t.Errorf("rssFlat(%v) = %v, want %v", tt.peaks, got, tt.want)
		}
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 1234567.6: "1,234,568", 100000: "100,000"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestRender(t *testing.T) {
	same, differ := true, false
	res := &results{Date: "2026-12-05", CPUModel: "AMD EPYC", CPUs: 2, Command: "make bench-score", PinnedCPU: 1, ORTVersion: "1.30.0", Quiet: 0.1,
		Baseline: true, BaselineName: "1f8159e",
		Throughput: []caseResult{
			{Case: tc, Reps: []rep{mkRep(1000, 1.1, 0), mkRep(1000, 1.12, 0)}, Identical: &same},
			{Case: tcase{Model: "classifier", Batch: 256, In: "npy", Out: "npy", Rows: 100256}, Reps: []rep{mkRep(1e7, 0.2, 0)}, Identical: &same},
		},
		RSS: []rssResult{
			{Case: rcase{"npy", "jsonl"}, Rows: []int{100000, 1000000}, Peak: []int64{85 << 10, 88 << 10}, BasePeak: []int64{86 << 10, 89 << 10}, Identical: &same},
			{Case: rcase{"npy", "parquet"}, Rows: []int{100000, 1000000}, Peak: []int64{90 << 10, 92 << 10}, BasePeak: []int64{90 << 10, 160 << 10}, Identical: &differ},
		},
	}
	out := render(res)
	for _, want := range []string{
		"Recorded 2026-12-05 on AMD EPYC, 2 CPUs", "make bench-score", "built from 1f8159e",
		"| **m** | 10 | npy → jsonl | 1,010 |", "**met**", "(98.0–100.0%)", "100,000 rows", "1,000,000 rows",
		"| npy → parquet | 90.0 MiB | 92.0 MiB | +2.0 MiB | yes | 90.0 MiB | 160.0 MiB | **no** | **no** |",
		"Peak RSS stays flat from 100,000 to 1,000,000 rows for every format", "reading each row's 4,000 bytes from the file",
		"Before, it grew for npy → parquet (+70.0 MiB).",
		"Outputs that differ in bytes from *before*'s: classifier, npy → parquet.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"NaN", "Inf", "%!"} {
		if strings.Contains(out, bad) {
			t.Errorf("report holds %q:\n%s", bad, out)
		}
	}
	// Without a baseline: no before columns; a slow headline misses the target.
	res.Baseline = false
	res.Throughput = []caseResult{{Case: tc, Reps: []rep{mkRep(1000, 1.5, 0)}}}
	out = render(res)
	if strings.Contains(out, "before") || !strings.Contains(out, "**not met**") {
		t.Errorf("report without a baseline, missing the target:\n%s", out)
	}
}
