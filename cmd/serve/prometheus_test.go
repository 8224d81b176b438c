//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	dashboardPath = "../../deploy/grafana/onnxserve.json"
	// minTraffic is how long traffic runs before the first query: with a
	// 1s scrape interval every rate() window then holds several samples.
	minTraffic = 5 * time.Second
	// requestPace spaces one driver's requests, a few hundred per driver
	// over minTraffic.
	requestPace = 15 * time.Millisecond
	// promDataTimeout bounds the wait for the queries to see the traffic;
	// they usually do at the first attempt.
	promDataTimeout = 20 * time.Second
	// promStopTimeout bounds the wait for Prometheus to exit on SIGTERM.
	promStopTimeout = 10 * time.Second
)

// dashboardMetrics are the metric families of DESIGN §1 the server exports;
// the dashboard must chart each and name no other.
var dashboardMetrics = []string{
	"onnxserve_requests_total",
	"onnxserve_request_duration_seconds",
	"onnxserve_queue_duration_seconds",
	"onnxserve_compute_duration_seconds",
	"onnxserve_batch_size",
	"onnxserve_queue_depth",
	"onnxserve_inflight_requests",
	"onnxserve_model_state",
	"onnxserve_traffic_routed_total",
	"onnxserve_shadow_requests_total",
	"onnxserve_rollout_percent",
	"onnxserve_rollout_state",
	"onnxserve_rollout_transitions_total",
}

// dashboardQuery is one PromQL expression of the dashboard and the panel
// that holds it.
type dashboardQuery struct {
	panel string
	expr  string
}

type dashboard struct {
	SchemaVersion int              `json:"schemaVersion"`
	UID           string           `json:"uid"`
	Panels        []map[string]any `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Definition string `json:"definition"`
			AllValue   string `json:"allValue"`
			IncludeAll bool   `json:"includeAll"`
		} `json:"list"`
	} `json:"templating"`

	raw any
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if err := json.Unmarshal(b, &d.raw); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return &d
}

// queries walks the whole dashboard, collapsed rows included, for the
// "expr" of every target.
func (d *dashboard) queries() []dashboardQuery {
	var out []dashboardQuery
	var walk func(v any, panel string)
	walk = func(v any, panel string) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				panel = title
			}
			if expr, ok := v["expr"].(string); ok {
				out = append(out, dashboardQuery{panel: panel, expr: expr})
			}
			for _, c := range v {
				walk(c, panel)
			}
		case []any:
			for _, c := range v {
				walk(c, panel)
			}
		}
	}
	walk(d.raw, "")
	return out
}

// variableQuery is the label_values(selector, label) query of a template
// variable.
func (d *dashboard) variableQuery(name string) string {
	for _, v := range d.Templating.List {
		if v.Name != name {
			continue
		}
		if q, ok := v.Query.(map[string]any); ok {
			if s, ok := q["query"].(string); ok {
				return s
			}
		}
		if s, ok := v.Query.(string); ok && v.Type == "query" {
			return s
		}
		return v.Definition
	}
	return ""
}

var (
	templateVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)
	labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	metricName  = regexp.MustCompile(`onnxserve_\w+`)
)

// substitute replaces the dashboard's template variables and Grafana's
// interval variables with values a plain Prometheus understands, and
// reports any variable it does not know.
func substitute(expr string, vars map[string]string) (string, error) {
	var unknown []string
	out := templateVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := templateVar.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		v, ok := vars[name]
		if !ok {
			unknown = append(unknown, m)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("undefined variables %v in %q", unknown, expr)
	}
	return out, nil
}

// TestGrafanaDashboard checks the dashboard's structure without a
// Prometheus: every panel reads the chosen data source, ids and positions
// are sound, every variable used is defined, and each metric family of
// DESIGN §1 is charted under its exact name.
func TestGrafanaDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 39 || d.UID == "" {
		t.Errorf("schemaVersion %d, uid %q: want >= 39 and a fixed uid", d.SchemaVersion, d.UID)
	}
	defined := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
		switch v.Name {
		case "datasource":
			if v.Type != "datasource" || v.Query != "prometheus" {
				t.Errorf("datasource variable: type %q query %v, want a Prometheus data source variable", v.Type, v.Query)
			}
		case "model", "version":
			if !labelValues.MatchString(d.variableQuery(v.Name)) {
				t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, d.variableQuery(v.Name))
			}
		}
		if v.IncludeAll && v.AllValue != ".*" {
			t.Errorf("variable %s includes All as %q; the queries match it with =~, so it must be .*", v.Name, v.AllValue)
		}
	}
	for _, name := range []string{"datasource", "model", "version"} {
		if !defined[name] {
			t.Errorf("template variable %q missing", name)
		}
	}

	ids := map[float64]string{}
	for _, p := range d.Panels {
		title, _ := p["title"].(string)
		t.Run(title, func(t *testing.T) {
			id, _ := p["id"].(float64)
			if other, dup := ids[id]; dup || id == 0 {
				t.Errorf("panel id %v missing or shared with %q", id, other)
			}
			ids[id] = title
			gp, _ := p["gridPos"].(map[string]any)
			x, _ := gp["x"].(float64)
			w, _ := gp["w"].(float64)
			h, _ := gp["h"].(float64)
			if w <= 0 || h <= 0 || x+w > 24 {
				t.Errorf("gridPos %v does not fit the 24-column grid", gp)
			}
			if p["type"] == "row" {
				return
			}
			if ds, _ := p["datasource"].(map[string]any); ds["uid"] != "${datasource}" {
				t.Errorf("panel datasource %v, want uid ${datasource}", p["datasource"])
			}
			targets, _ := p["targets"].([]any)
			if len(targets) == 0 {
				t.Fatal("panel has no queries")
			}
			refs := map[string]bool{}
			for _, tg := range targets {
				tm, _ := tg.(map[string]any)
				ref, _ := tm["refId"].(string)
				if ref == "" || refs[ref] {
					t.Errorf("refId %q empty or repeated", ref)
				}
				refs[ref] = true
				if expr, _ := tm["expr"].(string); strings.TrimSpace(expr) == "" {
					t.Errorf("target %s has no expr", ref)
				}
			}
		})
	}

	used := map[string]bool{}
	for _, q := range d.queries() {
		for _, m := range templateVar.FindAllStringSubmatch(q.expr, -1) {
			if name := m[1] + m[2] + m[3]; !defined[name] {
				t.Errorf("%s: variable %s is not defined", q.panel, m[0])
			}
		}
		for _, m := range metricName.FindAllString(q.expr, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
			if !slices.Contains(dashboardMetrics, base) {
				t.Errorf("%s: %s is not a metric the server exports", q.panel, m)
			}
			used[base] = true
		}
	}
	for _, m := range dashboardMetrics {
		if !used[m] {
			t.Errorf("no panel charts %s", m)
		}
	}
}

// requirePrometheus returns the prometheus binary, skipping when it is
// absent unless ONNXSERVE_REQUIRE_TOOLS=1 (set by `make test` once
// scripts/ensure-tools.sh found it) makes that a failure.
func requirePrometheus(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("ONNXSERVE_REQUIRE_TOOLS") == "1" {
			t.Fatalf("prometheus required: %v", err)
		}
		t.Skipf("no prometheus on PATH (scripts/ensure-tools.sh installs it): %v", err)
	}
	return bin
}

// promServer is a Prometheus child process on a loopback port.
type promServer struct {
	base    string
	logPath string
	exited  chan struct{}
	waitErr error // set before exited closes
}

// freeLoopbackPort asks the kernel for a free port. Another process may
// take it before Prometheus binds, so startPrometheus retries.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// startPrometheus runs Prometheus scraping target every second, and stops
// its whole process group when the test ends.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: onnxserve
    static_configs:
      - targets: [%q]
`, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for attempt := range 3 {
		p, err := launchPrometheus(t, bin, cfgPath, filepath.Join(dir, fmt.Sprint("data", attempt)), filepath.Join(dir, fmt.Sprint("log", attempt)))
		if err == nil {
			return p
		}
		lastErr = err
	}
	t.Fatalf("prometheus did not become ready: %v", lastErr)
	return nil
}

func launchPrometheus(t *testing.T, bin, cfgPath, dataDir, logPath string) (*promServer, error) {
	t.Helper()
	addr := freeLoopbackPort(t)
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+dataDir,
		"--web.listen-address="+addr,
		"--log.level=warn")
	cmd.Dir = filepath.Dir(cfgPath)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own process group, so cleanup reaches every process it starts;
	// Pdeathsig ends it even if the test binary dies before cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	p := &promServer{base: "http://" + addr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t, cmd.Process.Pid) })

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(testTimeout)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("prometheus exited (%v): %s", p.waitErr, p.log())
		case <-deadline:
			return nil, fmt.Errorf("not ready in %v (last: %v): %s", testTimeout, err, p.log())
		case <-tick.C:
		}
	}
}

func (p *promServer) log() string {
	b, _ := os.ReadFile(p.logPath)
	return strings.TrimSpace(string(b))
}

// stop ends the process group: SIGTERM, then SIGKILL if it lingers.
func (p *promServer) stop(t *testing.T, pid int) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(promStopTimeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.exited
		t.Errorf("prometheus ignored SIGTERM for %v", promStopTimeout)
	}
}

// promSample is one element of an instant query's result.
type promSample struct {
	labels map[string]string
	value  float64
}

// errBadQuery marks a query Prometheus rejected as malformed; retrying
// cannot fix it.
var errBadQuery = errors.New("prometheus rejected the query")

// query runs an instant PromQL query.
func (p *promServer) query(expr string) ([]promSample, error) {
	resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode answer (%s): %w", resp.Status, err)
	}
	if r.Status != "success" {
		if r.ErrorType == "bad_data" {
			return nil, fmt.Errorf("%w: %s", errBadQuery, r.Error)
		}
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	var raw []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	switch r.Data.ResultType {
	case "vector":
		if err := json.Unmarshal(r.Data.Result, &raw); err != nil {
			return nil, err
		}
	case "scalar":
		raw = make([]struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}, 1)
		if err := json.Unmarshal(r.Data.Result, &raw[0].Value); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("result type %q, want an instant vector", r.Data.ResultType)
	}
	out := make([]promSample, 0, len(raw))
	for _, s := range raw {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("sample value %v: %w", s.Value[1], err)
		}
		out = append(out, promSample{labels: s.Metric, value: v})
	}
	return out, nil
}

// labelValues answers a label_values(selector, label) variable query.
func (p *promServer) labelValues(selector, label string) ([]string, error) {
	resp, err := http.Get(p.base + "/api/v1/label/" + label + "/values?match[]=" + url.QueryEscape(selector))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string   `json:"status"`
		Error  string   `json:"error"`
		Data   []string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", resp.Status, r.Error)
	}
	return r.Data, nil
}

// trafficCounts are the answers one driver got, by served version and code.
type trafficCounts map[[2]string]int

// driveTraffic posts classifier requests to path every requestPace until
// stop closes; every tenth request has no inputs and must answer 400.
func driveTraffic(t *testing.T, client *http.Client, base, path string, stop <-chan struct{}) trafficCounts {
	counts := trafficCounts{}
	tick := time.NewTicker(requestPace)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return counts
		case <-tick.C:
		}
		body, want := classifierBody(i), http.StatusOK
		if i%10 == 9 && strings.Contains(path, "/versions/") {
			body, want = `{"inputs":[]}`, http.StatusBadRequest
		}
		resp, err := client.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Errorf("POST %s: %v", path, err)
			return counts
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		var r inferResponse
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil || resp.StatusCode != want {
			t.Errorf("POST %s: %d %q (%v), want %d", path, resp.StatusCode, b, err, want)
			return counts
		}
		version := r.ModelVersion
		if want != http.StatusOK {
			// An error answer names no version; the version in the path served it.
			version = path[strings.Index(path, "/versions/")+len("/versions/") : strings.LastIndex(path, "/")]
		}
		counts[[2]string{version, strconv.Itoa(resp.StatusCode)}]++
	}
}

// TestRealPrometheus scrapes a live server with a real Prometheus and runs
// every query of the Grafana dashboard against it: each must parse and
// return finite data, so a renamed metric or label, or a broken
// expression, fails here rather than as an empty panel in production.
func TestRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("drives traffic for several seconds")
	}
	bin := requirePrometheus(t)
	start := time.Now()
	repo := copyRepo(t)
	cfgPath := filepath.Join(repo, "classifier", "config.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// A split and a shadow, so the routing and shadow panels have data too.
	cfg = append(cfg, "traffic:\n  split: {\"1\": 50, \"2\": 50}\n  shadow: {version: 2, percent: 50}\n"...)
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, repo)
	// A rollout that keeps the same split (version 1 as the candidate at
	// 50%, version 2, the shadow, as the baseline) for the rollout panels.
	var ro struct{ Error string }
	if code := do(t, "POST", ts.http+"/v2/models/classifier/rollout",
		`{"candidate":"1","baseline":"2","steps":[50,100],"step_interval":"1h","min_requests":1000000}`, &ro); code != http.StatusOK {
		t.Fatalf("start a rollout: %d %s", code, ro.Error)
	}
	prom := startPrometheus(t, bin, ts.a.metricsLn.Addr().String())

	client := &http.Client{Timeout: testTimeout}
	defer client.CloseIdleConnections()
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopTraffic := func() { stopOnce.Do(func() { close(stop) }) }
	var drivers sync.WaitGroup
	// The drivers finish before the server's cleanup stops it, on every path.
	defer func() {
		stopTraffic()
		drivers.Wait()
	}()
	paths := []string{
		"/v2/models/classifier/versions/1/infer",
		"/v2/models/classifier/versions/2/infer",
		"/v2/models/classifier/infer",
	}
	results := make(chan trafficCounts, len(paths))
	for _, path := range paths {
		drivers.Go(func() { results <- driveTraffic(t, client, ts.http, path, stop) })
	}
	// Not synchronisation: the traffic must span several scrapes.
	<-time.After(minTraffic)

	d := loadDashboard(t)
	vars := map[string]string{
		"datasource":      "prometheus",
		"model":           "classifier",
		"version":         ".*",
		"__rate_interval": "1m",
		"__interval":      "1m",
		"__range":         "1m",
	}
	var queries []dashboardQuery
	for _, q := range d.queries() {
		if strings.Contains(q.expr, "onnxserve:") {
			// Recording rules of deploy/prometheus: the deploy module's
			// TestQualityRules evaluates them against a known stream.
			continue
		}
		expr, err := substitute(q.expr, vars)
		if err != nil {
			t.Fatalf("%s: %v", q.panel, err)
		}
		queries = append(queries, dashboardQuery{panel: q.panel, expr: expr})
	}
	if len(queries) < 10 {
		t.Fatalf("found only %d queries in %s", len(queries), dashboardPath)
	}
	const p99 = `histogram_quantile(0.99, sum by (le, version) (rate(onnxserve_request_duration_seconds_bucket{model="classifier"}[1m])))`

	// check reports what is still missing; nil means every query has data.
	check := func() []string {
		var missing []string
		got, err := prom.query(p99)
		if errors.Is(err, errBadQuery) {
			t.Fatalf("p99 query: %v", err)
		}
		byVersion := map[string]float64{}
		for _, s := range got {
			byVersion[s.labels["version"]] = s.value
		}
		if err != nil || len(got) != 2 || len(byVersion) != 2 {
			missing = append(missing, fmt.Sprintf("p99 by version: %v %v", got, err))
		}
		for _, v := range []string{"1", "2"} {
			if x, ok := byVersion[v]; !ok || math.IsNaN(x) || math.IsInf(x, 0) || x <= 0 {
				missing = append(missing, fmt.Sprintf("p99 of version %s: %v (present %v)", v, x, ok))
			}
		}
		for _, q := range queries {
			got, err := prom.query(q.expr)
			if errors.Is(err, errBadQuery) {
				t.Fatalf("panel %q: %q: %v", q.panel, q.expr, err)
			}
			finite := slices.ContainsFunc(got, func(s promSample) bool { return !math.IsNaN(s.value) && !math.IsInf(s.value, 0) })
			if err != nil || !finite {
				missing = append(missing, fmt.Sprintf("panel %q: %s: %v %v", q.panel, q.expr, got, err))
			}
		}
		return missing
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(promDataTimeout)
	for missing := check(); len(missing) > 0; missing = check() {
		select {
		case <-deadline:
			t.Fatalf("after %v, queries without finite data:\n%s\nprometheus log: %s", promDataTimeout, strings.Join(missing, "\n"), prom.log())
		case <-tick.C:
		}
	}

	// The A/B share panel must describe the split: two versions, about
	// half each, adding up to one.
	for _, q := range queries {
		if q.panel != "A/B arm shares" {
			continue
		}
		got, err := prom.query(q.expr)
		if err != nil {
			t.Fatal(err)
		}
		total := 0.0
		for _, s := range got {
			total += s.value
			if s.value < 0.25 || s.value > 0.75 {
				t.Errorf("50/50 split: version %s share %v", s.labels["version"], s.value)
			}
		}
		if len(got) != 2 || math.Abs(total-1) > 1e-9 {
			t.Errorf("A/B shares %v add up to %v, want two versions adding up to 1", got, total)
		}
	}

	// The variables' label_values queries list the model and its versions.
	for name, want := range map[string][]string{"model": {"classifier"}, "version": {"1", "2"}} {
		q, err := substitute(d.variableQuery(name), vars)
		if err != nil {
			t.Fatal(err)
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(selector, label)", name, q)
		}
		got, err := prom.labelValues(m[1], m[2])
		if err != nil {
			t.Fatalf("variable %s: %v", name, err)
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("variable %s offers %v, want %s among them", name, got, w)
			}
		}
	}

	// Prometheus holds exactly the answers the clients got.
	stopTraffic()
	sent := trafficCounts{}
	total := 0
	for range paths {
		for k, n := range <-results {
			sent[k] += n
			total += n
		}
	}
	if total < 3*int(minTraffic/requestPace)/2 {
		t.Errorf("only %d requests sent in %v", total, time.Since(start))
	}
	for {
		got, err := prom.query(`sum by (version, code) (onnxserve_requests_total{model="classifier",protocol="http"})`)
		if err != nil {
			t.Fatal(err)
		}
		scraped := trafficCounts{}
		for _, s := range got {
			scraped[[2]string{s.labels["version"], s.labels["code"]}] = int(s.value)
		}
		if fmt.Sprint(scraped) == fmt.Sprint(sent) {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("Prometheus holds %v, clients got %v", scraped, sent)
		case <-tick.C:
		}
	}
	t.Logf("%d requests; every dashboard query answered by a real Prometheus in %v", total, time.Since(start).Round(time.Millisecond))
}
