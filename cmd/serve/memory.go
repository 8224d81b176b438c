package main

import (
	"bufio"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// Sources of the memory limit the process runs under, as the startup log
// names them.
const (
	memFromCgroup   = "cgroup"
	memFromGOMEM    = "GOMEMLIMIT"
	memFromPhysical = "physical memory"
)

// Shares of the memory limit: the request bytes in flight may take a
// quarter of it (the rest is for model weights, ONNX Runtime's arenas,
// outputs and the Go runtime), and the Go heap is held under 90% of a
// cgroup limit.
const (
	inflightShare    = 4 // --max-inflight-bytes = limit / inflightShare
	goLimitPercent   = 90
	minInflightBytes = 64 << 20
)

// cgroupUnlimited is from where a cgroup v1 limit means none (v1 writes a
// page-rounded MaxInt64).
const cgroupUnlimited = 1 << 60

// cgroupLimit returns the memory limit of the process's cgroup (v2
// memory.max, else v1 memory.limit_in_bytes), read under root
// (/sys/fs/cgroup) as /proc/self/cgroup places it; ok is false without
// one.
func cgroupLimit(root, procCgroup string) (limit int64, ok bool) {
	f, err := os.Open(procCgroup)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var candidates []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			candidates = append(candidates, filepath.Join(root, parts[2], "memory.max"), filepath.Join(root, "memory.max"))
		case strings.Contains(","+parts[1]+",", ",memory,"):
			candidates = append(candidates, filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes"), filepath.Join(root, "memory", "memory.limit_in_bytes"))
		}
	}
	for _, path := range candidates {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || v <= 0 || v >= cgroupUnlimited {
			return 0, false // "max", or a v1 value that means none
		}
		return v, true
	}
	return 0, false
}

// physicalMemory returns the machine's RAM, 0 when unknown.
func physicalMemory() int64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

// memoryLimit is the memory the process runs under and where the figure
// comes from: its cgroup's limit, else GOMEMLIMIT, else physical memory.
type memoryLimit struct {
	bytes  int64
	source string
}

// findMemoryLimit reads the limit; goLimit is the Go runtime's memory
// limit (math.MaxInt64 when GOMEMLIMIT is unset).
func findMemoryLimit(cgroup int64, hasCgroup bool, goLimit, physical int64) memoryLimit {
	switch {
	case hasCgroup:
		return memoryLimit{cgroup, memFromCgroup}
	case goLimit > 0 && goLimit < math.MaxInt64:
		return memoryLimit{goLimit, memFromGOMEM}
	default:
		return memoryLimit{physical, memFromPhysical}
	}
}

// inflightBytes is the default of --max-inflight-bytes: a quarter of the
// limit, at least 64 MiB.
func (m memoryLimit) inflightBytes() int64 {
	return max(m.bytes/inflightShare, minInflightBytes)
}

// defaultMemoryLimit finds the process's memory limit.
func defaultMemoryLimit() memoryLimit {
	cg, ok := cgroupLimit("/sys/fs/cgroup", "/proc/self/cgroup")
	return findMemoryLimit(cg, ok, debug.SetMemoryLimit(-1), physicalMemory())
}

// goHeadroom is what the Go heap may hold beyond the requests in flight:
// the server's own state, batches and responses being written, garbage.
const goHeadroom = 256 << 20

// goMemoryLimit is the default soft memory limit of the Go runtime: the
// memory budget plus goHeadroom, and at most 90% of a cgroup limit;
// math.MaxInt64 (none) without either. Without it the collector, at the
// server's GOGC of 400, lets garbage grow to four times the live heap, so
// a burst of large requests within the budget would still take RSS far
// past it, and keep it there.
func goMemoryLimit(m memoryLimit, budget int64) int64 {
	limit := int64(math.MaxInt64)
	if m.source == memFromCgroup {
		limit = m.bytes / 100 * goLimitPercent
	}
	if budget > 0 {
		limit = min(limit, budget+goHeadroom)
	}
	return limit
}

// applyGoMemoryLimit sets the Go runtime's soft memory limit to
// goMemoryLimit, unless GOMEMLIMIT set one (which the runtime has read
// already). It returns the limit in force, math.MaxInt64 for none.
func applyGoMemoryLimit(m memoryLimit, budget int64, getenv func(string) string) int64 {
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(goMemoryLimit(m, budget))
	}
	return debug.SetMemoryLimit(-1)
}

// newBudget returns the memory budget of --max-inflight-bytes (nil for
// none) and registers its metrics: the bytes held, the budget, and the
// requests refused over it.
func newBudget(max int64, reg prometheus.Registerer) (*guard.Budget, error) {
	b := guard.NewBudget(max)
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "onnxserve_inflight_request_bytes",
			Help: "Request bytes held now against --max-inflight-bytes (bodies as they arrive, gRPC messages with their decoding cost)."},
			func() float64 { return float64(b.InUse()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "onnxserve_inflight_request_bytes_limit",
			Help: "The --max-inflight-bytes memory budget; 0 for none."},
			func() float64 { return float64(b.Max()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "onnxserve_rejected_requests_total",
			Help:        "Requests refused before they were decoded, by reason.",
			ConstLabels: prometheus.Labels{"reason": "memory_budget"}},
			func() float64 { return float64(b.Rejected()) }),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return b, nil
}
