package main

import (
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

func TestCgroupLimit(t *testing.T) {
	for _, c := range []struct {
		name       string
		procCgroup string
		files      map[string]string
		want       int64
		ok         bool
	}{
		{"v2 in a container", "0::/\n", map[string]string{"memory.max": "536870912\n"}, 512 << 20, true},
		{"v2 nested", "0::/kubepods/pod1\n", map[string]string{"kubepods/pod1/memory.max": "1073741824\n", "memory.max": "max\n"}, 1 << 30, true},
		{"v2 unlimited", "0::/\n", map[string]string{"memory.max": "max\n"}, 0, false},
		{"v1", "4:memory:/docker/abc\n0::/\n", map[string]string{"memory/docker/abc/memory.limit_in_bytes": "268435456\n"}, 256 << 20, true},
		{"v1 unlimited", "4:memory:/\n", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, false},
		{"no cgroup files", "0::/\n", nil, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, data := range c.files {
				p := filepath.Join(root, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			proc := filepath.Join(t.TempDir(), "cgroup")
			if err := os.WriteFile(proc, []byte(c.procCgroup), 0o644); err != nil {
				t.Fatal(err)
			}
			got, ok := cgroupLimit(root, proc)
			if got != c.want || ok != c.ok {
				t.Fatalf("cgroupLimit = %d, %v; want %d, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestInflightDefault(t *testing.T) {
	for _, c := range []struct {
		name              string
		cgroup            int64
		hasCgroup         bool
		goLimit, physical int64
		wantSource        string
		wantBudget        int64
	}{
		{"cgroup first", 2 << 30, true, 1 << 30, 16 << 30, memFromCgroup, 512 << 20},
		{"then GOMEMLIMIT", 0, false, 1 << 30, 16 << 30, memFromGOMEM, 256 << 20},
		{"then physical memory", 0, false, math.MaxInt64, 16 << 30, memFromPhysical, 4 << 30},
		{"at least 64 MiB", 128 << 20, true, math.MaxInt64, 16 << 30, memFromCgroup, 64 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := findMemoryLimit(c.cgroup, c.hasCgroup, c.goLimit, c.physical)
			if m.source != c.wantSource || m.inflightBytes() != c.wantBudget {
				t.Fatalf("%+v budget %d; want from %s, %d", m, m.inflightBytes(), c.wantSource, c.wantBudget)
			}
		})
	}
	o, err := parseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := defaultMemoryLimit().inflightBytes(); o.maxInflightBytes != want {
		t.Fatalf("--%s defaults to %d, want %d", guard.LimitInflightBytes, o.maxInflightBytes, want)
	}
	if _, err := parseOptions([]string{"--" + guard.LimitInflightBytes, "-1"}); err == nil {
		t.Fatal("a negative budget was accepted")
	}
}

func TestGoMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		name   string
		m      memoryLimit
		budget int64
		want   int64
	}{
		{"budget plus headroom", memoryLimit{16 << 30, memFromPhysical}, 4 << 30, 4<<30 + goHeadroom},
		{"90% of a cgroup limit", memoryLimit{1 << 30, memFromCgroup}, 1 << 30, (1 << 30) / 100 * 90},
		{"budget under a cgroup", memoryLimit{4 << 30, memFromCgroup}, 1 << 30, 1<<30 + goHeadroom},
		{"neither", memoryLimit{16 << 30, memFromPhysical}, 0, math.MaxInt64},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := goMemoryLimit(c.m, c.budget); got != c.want {
				t.Fatalf("goMemoryLimit = %d, want %d", got, c.want)
			}
		})
	}
}

// TestMemoryBudgetEndToEnd: over the budget, a request is answered 429
// with Retry-After naming the flag and counted in the metric.
func TestMemoryBudgetEndToEnd(t *testing.T) {
	ts := startServer(t, copyRepo(t), "--"+guard.LimitInflightBytes, "100000")
	body := simpleBody(seq(0, 16), seq(1, 16)) + strings.Repeat(" ", 200000)
	resp, err := http.Post(ts.http+"/v2/models/simple/infer", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), guard.LimitInflightBytes) {
		t.Fatalf("over the budget: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	if code := do(t, "POST", ts.http+"/v2/models/simple/infer", simpleBody(seq(0, 16), seq(1, 16)), nil); code != http.StatusOK {
		t.Fatalf("within the budget: %d", code)
	}
	mresp, err := http.Get("http://" + ts.a.metricsLn.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{`onnxserve_rejected_requests_total{reason="memory_budget"} 1`, "onnxserve_inflight_request_bytes_limit 100000", "onnxserve_inflight_request_bytes 0"} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
