package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc: USER_HZ, which Linux
// fixes at 100 for user space on every architecture it ships.
const clockTick = 10 * time.Millisecond

// errProc is wrapped by failures to read or parse /proc files.
var errProc = errors.New("proc")

// procCPU returns the user plus system CPU time of process pid, every
// thread included.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errProc, err)
	}
	return parseProcStat(string(b))
}

// parseProcStat reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseProcStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat line without a command name: %.40q", errProc, s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: stat line has %d fields after the command name", errProc, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: cpu time %q: %v", errProc, s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// machineBusy returns the CPU time all CPUs of the machine spent not idle,
// from the first line of /proc/stat.
func machineBusy() (time.Duration, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errProc, err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("%w: /proc/stat: %v", errProc, err)
	}
	return parseMachineBusy(line)
}

// parseMachineBusy sums user, nice, system, irq, softirq and steal of the
// aggregate "cpu" line; idle and iowait are the time nothing ran.
func parseMachineBusy(line string) (time.Duration, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("%w: /proc/stat first line %.60q is not the cpu total", errProc, line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: /proc/stat field %d %q: %v", errProc, i, f[i], err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// histogram is one Prometheus histogram series: cumulative bucket counts
// by upper bound, sum and count.
type histogram struct {
	bounds []float64 // ascending, +Inf last
	counts []float64 // cumulative, as exposed
	sum    float64
	count  float64
}

// sub returns h minus an earlier snapshot of the same series.
func (h histogram) sub(old histogram) histogram {
	d := histogram{bounds: h.bounds, sum: h.sum - old.sum, count: h.count - old.count}
	d.counts = make([]float64, len(h.counts))
	for i := range h.counts {
		d.counts[i] = h.counts[i]
		if i < len(old.counts) {
			d.counts[i] -= old.counts[i]
		}
	}
	return d
}

// add returns the sum of two series of one family (same bounds).
func (h histogram) add(o histogram) histogram {
	if len(h.bounds) == 0 {
		h.bounds = o.bounds
		h.counts = append([]float64(nil), o.counts...)
	} else {
		h.counts = append([]float64(nil), h.counts...)
		for i := range h.counts {
			if i < len(o.counts) {
				h.counts[i] += o.counts[i]
			}
		}
	}
	h.sum += o.sum
	h.count += o.count
	return h
}

// quantile estimates the q-quantile by linear interpolation inside the
// bucket that holds it, as Prometheus's histogram_quantile does; it is
// only as fine as the buckets. It returns 0 for an empty histogram.
func (h histogram) quantile(q float64) float64 {
	if h.count <= 0 || len(h.bounds) == 0 {
		return 0
	}
	rank := q * h.count
	prevBound, prevCount := 0.0, 0.0
	for i, b := range h.bounds {
		c := h.counts[i]
		if c >= rank {
			if math.IsInf(b, 1) {
				return prevBound
			}
			if c == prevCount {
				return b
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = b, c
	}
	return prevBound
}

// mean returns sum/count, or 0 for an empty histogram.
func (h histogram) mean() float64 {
	if h.count <= 0 {
		return 0
	}
	return h.sum / h.count
}

// seriesKey names one histogram: metric family and its model and version
// labels.
type seriesKey struct {
	name, model, version string
}

// parseHistograms reads the histograms named in families from Prometheus
// text exposition, keyed by their model and version labels; series that
// differ in other labels (the protocol of the request duration) are
// summed. Other series are ignored.
func parseHistograms(r io.Reader, families ...string) (map[seriesKey]histogram, error) {
	type fullKey struct {
		seriesKey
		protocol string
	}
	all := map[fullKey]histogram{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		fam, suffix, ok := matchFamily(line, families)
		if !ok {
			continue
		}
		labels, value, err := splitSample(line)
		if err != nil {
			return nil, err
		}
		k := fullKey{seriesKey{name: fam, model: labels["model"], version: labels["version"]}, labels["protocol"]}
		h := all[k]
		switch suffix {
		case "_bucket":
			le, err := strconv.ParseFloat(labels["le"], 64)
			if err != nil {
				return nil, fmt.Errorf("metrics: %s: bucket bound %q: %w", fam, labels["le"], err)
			}
			h.bounds = append(h.bounds, le)
			h.counts = append(h.counts, value)
		case "_sum":
			h.sum = value
		case "_count":
			h.count = value
		}
		all[k] = h
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := map[seriesKey]histogram{}
	for k, h := range all {
		out[k.seriesKey] = out[k.seriesKey].add(h)
	}
	return out, nil
}

// parseValues reads the counters and gauges named in names from
// Prometheus text exposition, keyed by their model and version labels;
// series that differ in other labels are summed (the predicted class of
// onnxserve_predictions_total, the tap of onnxserve_tap_dropped_total).
// Other series are ignored.
func parseValues(r io.Reader, names ...string) (map[seriesKey]float64, error) {
	out := map[seriesKey]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		for _, name := range names {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
				continue
			}
			labels, value, err := splitSample(line)
			if err != nil {
				return nil, err
			}
			out[seriesKey{name: name, model: labels["model"], version: labels["version"]}] += value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}

// matchFamily reports which of families line is a sample of, and its
// suffix (_bucket, _sum or _count).
func matchFamily(line string, families []string) (string, string, bool) {
	for _, fam := range families {
		if !strings.HasPrefix(line, fam) {
			continue
		}
		rest := line[len(fam):]
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasPrefix(rest, suf) && len(rest) > len(suf) && (rest[len(suf)] == '{' || rest[len(suf)] == ' ') {
				return fam, suf, true
			}
		}
	}
	return "", "", false
}

// splitSample parses `name{k="v",...} value [timestamp]`. Label values in
// these series hold no escaped quotes, so a plain scan suffices.
func splitSample(line string) (map[string]string, float64, error) {
	labels := map[string]string{}
	rest := line
	if i := strings.IndexByte(line, '{'); i >= 0 {
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return nil, 0, fmt.Errorf("metrics: unbalanced braces in %.80q", line)
		}
		for _, kv := range strings.Split(line[i+1:j], ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		}
		rest = line[j+1:]
	} else if i := strings.IndexByte(line, ' '); i >= 0 {
		rest = line[i:]
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return nil, 0, fmt.Errorf("metrics: no value in %.80q", line)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return nil, 0, fmt.Errorf("metrics: value of %.80q: %w", line, err)
	}
	return labels, v, nil
}

// Metric families the suite reads.
const (
	famBatchSize = "onnxserve_batch_size"
	famCompute   = "onnxserve_compute_duration_seconds"
	famRequest   = "onnxserve_request_duration_seconds"
	famQueue     = "onnxserve_queue_duration_seconds"
	// Counters and gauges of the model-quality loop: predictions counted
	// per model, answers a tap's full queue dropped (every tap summed; no
	// label model), and the prediction store's size (no label model).
	famPredictions = "onnxserve_predictions_total"
	famTapDropped  = "onnxserve_tap_dropped_total"
	famStoreBytes  = "onnxserve_prediction_store_bytes"
)

// latencyBuckets are the duration histogram bounds the suite starts the
// server with (--histogram-buckets): 50µs steps up to 2ms, where the
// batching latency bound lies, then coarser, so server-side percentiles
// read from them are precise where it matters.
func latencyBuckets() string {
	var b []string
	for us := 50; us <= 2000; us += 50 {
		b = append(b, strconv.FormatFloat(float64(us)/1e6, 'f', -1, 64))
	}
	b = append(b, "0.0025", "0.003", "0.004", "0.005", "0.0075", "0.01", "0.015", "0.02", "0.03", "0.05",
		"0.075", "0.1", "0.15", "0.2", "0.3", "0.5", "0.75", "1", "2", "5", "10")
	return strings.Join(b, ",")
}

// scrape fetches the server's /metrics and returns its batch-size,
// duration and compute-time histograms and the quality loop's counters.
func scrape(client *http.Client, addr string) (map[seriesKey]histogram, map[seriesKey]float64, error) {
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("scrape: http %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("scrape: %w", err)
	}
	hists, err := parseHistograms(bytes.NewReader(body), famBatchSize, famCompute, famRequest, famQueue)
	if err != nil {
		return nil, nil, err
	}
	values, err := parseValues(bytes.NewReader(body), famPredictions, famTapDropped, famStoreBytes)
	if err != nil {
		return nil, nil, err
	}
	return hists, values, nil
}

// batchShare is the share of batches whose size fell in (lo, hi].
type batchShare struct {
	Lo, Hi  float64
	Percent float64
}

// distribution turns a batch-size histogram into the share of batches per
// bucket, leaving out empty buckets.
func distribution(h histogram) []batchShare {
	if h.count <= 0 {
		return nil
	}
	var out []batchShare
	prev, lo := 0.0, 0.0
	for i, b := range h.bounds {
		n := h.counts[i] - prev
		prev = h.counts[i]
		if n > 0 {
			out = append(out, batchShare{Lo: lo, Hi: b, Percent: 100 * n / h.count})
		}
		lo = b
	}
	return out
}

// formatShares writes a distribution as "1: 12%, 2: 3%, 3-4: 85%".
func formatShares(ds []batchShare) string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteString(", ")
		}
		lo := math.Floor(d.Lo) + 1
		switch {
		case math.IsInf(d.Hi, 1):
			fmt.Fprintf(&b, ">%g", d.Lo)
		case lo >= d.Hi:
			fmt.Fprintf(&b, "%g", d.Hi)
		default:
			fmt.Fprintf(&b, "%g-%g", lo, d.Hi)
		}
		fmt.Fprintf(&b, ": %.0f%%", d.Percent)
	}
	return b.String()
}
