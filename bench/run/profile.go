package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// profileSample is the CPU time one sample of Go's CPU profiler stands for
// (it samples at 100 Hz).
const profileSample = 10 * time.Millisecond

// profileConcurrency is the closed-loop load under which the server is
// profiled: enough to keep its core busy and its batches full.
const profileConcurrency = 128

// profiled is one protocol's profiles.
type profiled struct {
	model      string
	protocol   string
	throughput float64
	errors     int64
	cpuTop     string
	cpuCum     string
	allocTop   string
	objectsTop string
	objects    float64 // allocated objects in the profile window
	bytes      string  // allocated bytes in the profile window, as pprof prints it
	costs      costProfile
}

// runProfile profiles the server under load on each of --profile-models
// over gRPC, HTTP binary and HTTP JSON, and writes PROFILE.md.
func runProfile(ctx context.Context, c *config) error {
	if err := c.checkPrograms(false); err != nil {
		return err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is needed for `go tool pprof`: %w", err)
	}
	models, err := loadModels(c.bundled, c.ocrFile, c.profileModels)
	if err != nil {
		return err
	}
	dir := filepath.Join(c.work, "profile")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	repo := filepath.Join(c.work, "profile-repo")
	if err := writeRepository(repo, models); err != nil {
		return err
	}
	if err := c.snapshotServer(); err != nil {
		return err
	}
	srv, err := startServer(ctx, c.serverBin, c.serverCPU, repo, filepath.Join(c.work, "profile-server.log"), servedNames(models), append([]string{"--pprof"}, c.serverArgs...)...)
	if err != nil {
		return err
	}
	defer srv.stop()
	var out []profiled
	for _, m := range models {
		for _, protocol := range []string{"grpc", "http-binary", "http-json"} {
			p, err := profileOne(ctx, c, srv, m, protocol, dir, goTool, c.profileFor)
			if err != nil {
				return err
			}
			logf("profiled %s over %s: %.0f inf/s under profiling", m.name, protocol, p.throughput)
			out = append(out, p)
		}
	}
	srv.stop()
	path := filepath.Join(c.out, "PROFILE.md")
	if err := os.WriteFile(path, []byte(profileMarkdown(c, out)), 0o644); err != nil {
		return err
	}
	logf("wrote %s; raw profiles in %s", path, dir)
	return nil
}

// profileOne profiles the server for d while the load generator drives m
// over protocol.
func profileOne(ctx context.Context, c *config, srv *server, m *model, protocol, dir, goTool string, d time.Duration) (profiled, error) {
	p := profiled{model: m.name, protocol: protocol}
	addr := srv.grpc
	if protocol != "grpc" {
		addr = srv.http
	}
	warm := time.Second
	// The window outlasts the profiles by a margin on each side, so they
	// see steady load only.
	window := d + 2*time.Second
	cmd := pinned(ctx, c.clientCPU, c.loadgenBin, "--protocol", protocol, "--addr", addr, "--model", m.name, "--workload", m.name,
		"--concurrency", strconv.Itoa(profileConcurrency), "--warmup", warm.String(), "--duration", window.String())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return p, err
	}
	timer := time.NewTimer(warm + time.Second)
	select {
	case <-timer.C:
	case <-ctx.Done():
		_ = cmd.Wait()
		return p, ctx.Err()
	}
	secs := strconv.Itoa(int(d / time.Second))
	cpuFile := filepath.Join(dir, m.name+"-"+protocol+"-cpu.pprof")
	allocFile := filepath.Join(dir, m.name+"-"+protocol+"-allocs.pprof")
	client := &http.Client{Timeout: d + 30*time.Second}
	var wg sync.WaitGroup
	var cpuErr, allocErr error
	cpu0, err := procCPU(srv.pid)
	if err != nil {
		return p, err
	}
	t0 := time.Now()
	wg.Go(func() { cpuErr = fetch(client, "http://"+srv.metrics+"/debug/pprof/profile?seconds="+secs, cpuFile) })
	// A delta profile: only what was allocated during the window.
	wg.Go(func() { allocErr = fetch(client, "http://"+srv.metrics+"/debug/pprof/allocs?seconds="+secs, allocFile) })
	wg.Wait()
	cpu1, err := procCPU(srv.pid)
	if err != nil {
		return p, err
	}
	elapsed := time.Since(t0)
	if err := cmd.Wait(); err != nil {
		return p, fmt.Errorf("loadgen: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if cpuErr != nil || allocErr != nil {
		return p, fmt.Errorf("profiles (is --pprof mounted?): %v %v", cpuErr, allocErr)
	}
	var res loadgenResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return p, fmt.Errorf("loadgen output: %w", err)
	}
	p.throughput, p.errors = res.Throughput, res.Errors
	// The profile covers d of the load generator's steady window.
	inferences := p.throughput * d.Seconds()
	p.costs = costProfile{Model: m.name, Protocol: protocol, Throughput: p.throughput,
		ServerMicros: (cpu1 - cpu0).Seconds() * 1e6 / (p.throughput * elapsed.Seconds()),
		SampleMicros: profileSample.Seconds() * 1e6 / inferences}
	if p.costs.Shares, p.costs.SampledORT, err = attribute(cpuFile, inferences); err != nil {
		return p, err
	}
	if p.cpuTop, err = pprofTop(goTool, c.serverBin, cpuFile); err != nil {
		return p, err
	}
	if p.cpuCum, err = pprofTop(goTool, c.serverBin, cpuFile, "-cum"); err != nil {
		return p, err
	}
	if p.allocTop, err = pprofTop(goTool, c.serverBin, allocFile, "-sample_index=alloc_space"); err != nil {
		return p, err
	}
	if p.objectsTop, err = pprofTop(goTool, c.serverBin, allocFile, "-sample_index=alloc_objects"); err != nil {
		return p, err
	}
	p.objects, _ = topTotal(p.objectsTop)
	if m := totalRe.FindStringSubmatch(p.allocTop); m != nil {
		p.bytes = m[1]
	}
	return p, nil
}

func fetch(client *http.Client, url, path string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: http %d: %s", url, resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profileNodes is how many functions each summary lists.
const profileNodes = 25

func pprofTop(goTool, bin, file string, extra ...string) (string, error) {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=" + strconv.Itoa(profileNodes)}, extra...)
	args = append(args, bin, file)
	out, err := exec.Command(goTool, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// totalRe finds the total of a pprof -top header: "... of 1234 total".
var totalRe = regexp.MustCompile(`of ([0-9.]+[a-zA-Z]*) total`)

// topTotal reads the sample total of a pprof -top header as a number,
// for counts printed without a unit.
func topTotal(top string) (float64, bool) {
	m := totalRe.FindStringSubmatch(top)
	if m == nil {
		return 0, false
	}
	s, mult := m[1], 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		s, mult = strings.TrimSuffix(s, "k"), 1e3
	case strings.HasSuffix(s, "M"):
		s, mult = strings.TrimSuffix(s, "M"), 1e6
	case strings.HasSuffix(s, "G"):
		s, mult = strings.TrimSuffix(s, "G"), 1e9
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	return v * mult, true
}

func profileMarkdown(c *config, ps []profiled) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# onnxserve server profile\n\n")
	w("CPU and allocation profiles of the server (`--pprof`, served on the metrics port) while `bench/loadgen` drives each model closed-loop at concurrency %d; ", profileConcurrency)
	w("server pinned to CPU %d with one intra-op thread, load generator on CPU %d, loopback only. Each profile covers %s of steady load. ", c.serverCPU, c.clientCPU, c.profileFor)
	w("Date %s, commit `%s`, `%s`.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), gitCommit(), c.command)
	w("The allocation profiles are delta profiles over the same window; objects per inference = allocated objects / (throughput × window). ")
	w("Throughput is lower than in RESULTS.md: the profiler itself costs the server CPU. ")
	w("Go publishes allocation samples at garbage collections, so a window with few collections shows only what was published: where a server allocates little (the classifier over gRPC recycles its payload buffers), read the allocation figures as lower bounds.\n\n")
	w("| model | protocol | inferences/s while profiled | errors | allocated in window | objects per inference |\n|---|---|---:|---:|---:|---:|\n")
	for _, p := range ps {
		per := "–"
		if p.objects > 0 && p.throughput > 0 {
			per = fmt.Sprintf("%.0f", p.objects/(p.throughput*c.profileFor.Seconds()))
		}
		w("| %s | %s | %s | %d | %s | %s |\n", p.model, p.protocol, thousands(p.throughput), p.errors, p.bytes, per)
	}
	w("\n## Where the CPU goes\n\n")
	w("Server CPU per inference over each profile's window, broken down by kind of work from the CPU profile (each sample counted once: allocation, garbage collection and syscalls wherever they happen, the rest by the nearest function of a known kind). ")
	w("ONNX Runtime's thread is not always visible to Go's profiler, so its sampled share is left out; `make bench` sets the breakdown beside the raw baseline in RESULTS.md.\n\n")
	var cs []costProfile
	for _, p := range ps {
		cs = append(cs, p.costs)
	}
	w("%s\n", costsMarkdown(cs))
	for _, p := range ps {
		w("## %s over %s\n\n### CPU (top %d by flat time)\n\n```\n%s\n```\n\n", p.model, p.protocol, profileNodes, p.cpuTop)
		w("### CPU (top %d by cumulative time)\n\n```\n%s\n```\n\n", profileNodes, p.cpuCum)
		w("### Allocated bytes\n\n```\n%s\n```\n\n### Allocated objects\n\n```\n%s\n```\n\n", p.allocTop, p.objectsTop)
	}
	w("Reproduce: `make bench-profile`; the raw profiles stay in `%s` for `go tool pprof -http`.\n", filepath.Join(c.work, "profile"))
	return b.String()
}

// suiteProfiles are the model and protocol pairs whose costs `make bench`
// breaks down, and suiteProfileFor the length of each CPU profile.
var suiteProfiles = []struct{ model, protocol, mode string }{
	{"simple", "grpc", modeGRPC}, {"simple", "http-json", modeJSON},
	{"ocr_cls", "grpc", modeGRPC}, {"ocr_cls", "http-binary", modeBinary}, {"ocr_cls", "http-json", modeJSON},
}

const suiteProfileFor = 5 * time.Second

// runCosts profiles the suite's server under the suite's top load on each
// of suiteProfiles it measured, and sets each breakdown beside the raw
// baseline at the batch size the same load gave in the main table.
func (e *env) runCosts(ctx context.Context, res *results, models []*model) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is needed for `go tool pprof`: %w", err)
	}
	dir := filepath.Join(e.cfg.work, "profile")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, sp := range suiteProfiles {
		i := slices.IndexFunc(models, func(m *model) bool { return m.name == sp.model })
		if i < 0 || !slices.Contains(e.cfg.modes, sp.mode) {
			continue
		}
		e.waitQuiet(ctx)
		p, err := profileOne(ctx, e.cfg, e.srv, models[i], sp.protocol, dir, goTool, suiteProfileFor)
		if err != nil {
			return err
		}
		if s, ok := res.get(pointKey{Model: sp.model, Mode: sp.mode, Concurrency: profileConcurrency}); ok {
			if _, raw, ok := res.rawAt(sp.model, max(s.MeanBatch, 1)); ok {
				p.costs.RawMicros = raw * 1000
			}
		}
		logf("costs of %s over %s: %.1f µs of server CPU per inference", sp.model, sp.protocol, p.costs.ServerMicros)
		res.Costs = append(res.Costs, p.costs)
	}
	return nil
}
