package runtime

import (
	"math"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// AvailableCPUs returns how many CPUs this process may use: the CPUs in its
// affinity mask, lowered to the CPU quota of its cgroup (v2 cpu.max or v1
// cfs_quota_us / cfs_period_us, rounded up) when that is smaller, and at
// least 1. ONNX Runtime's own default counts every core of the machine, which
// oversubscribes a container limited to a few. It is safe for concurrent use.
func AvailableCPUs() int {
	n := goruntime.NumCPU()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil && set.Count() > 0 {
		n = set.Count()
	}
	if q, ok := cgroupCPUQuota(os.ReadFile); ok {
		if c := int(math.Ceil(q)); c < n {
			n = c
		}
	}
	return max(n, 1)
}

// cgroupCPUQuota returns the smallest CPU quota, in CPUs, set on this
// process's cgroup or any of its ancestors, in either cgroup version.
// readFile is os.ReadFile outside tests. ok is false when no quota applies
// or the files cannot be read.
func cgroupCPUQuota(readFile func(string) ([]byte, error)) (cpus float64, ok bool) {
	mountinfo, err := readFile("/proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	cgroups, err := readFile("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	best := math.Inf(1)
	for _, m := range cgroupMounts(string(mountinfo)) {
		rel, found := cgroupPath(string(cgroups), m.v2)
		if !found {
			continue
		}
		// The process's path is relative to the hierarchy's root; the
		// mount shows the part of the hierarchy below m.root.
		dir := m.point
		switch {
		case m.root == "/":
			dir = filepath.Join(m.point, rel)
		case rel == m.root || strings.HasPrefix(rel, m.root+"/"):
			dir = filepath.Join(m.point, strings.TrimPrefix(rel, m.root))
		}
		if !strings.HasPrefix(dir, m.point) {
			dir = m.point
		}
		for {
			if q, has := readQuota(readFile, dir, m.v2); has && q < best {
				best = q
			}
			if dir == m.point || len(dir) <= len(m.point) {
				break
			}
			dir = filepath.Dir(dir)
		}
	}
	if math.IsInf(best, 1) {
		return 0, false
	}
	return best, true
}

// cgroupMount is one mounted cgroup hierarchy that can limit CPU time.
type cgroupMount struct {
	point string // where it is mounted
	root  string // the hierarchy path shown at point
	v2    bool
}

// cgroupMounts finds the cgroup v2 mount and any v1 mount of the "cpu"
// controller in /proc/self/mountinfo.
func cgroupMounts(mountinfo string) []cgroupMount {
	var out []cgroupMount
	for line := range strings.Lines(mountinfo) {
		// Fields: id parent major:minor root point options [optional...] - fstype source superoptions
		pre, post, found := strings.Cut(strings.TrimSpace(line), " - ")
		if !found {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 {
			continue
		}
		switch g[0] {
		case "cgroup2":
			out = append(out, cgroupMount{point: f[4], root: f[3], v2: true})
		case "cgroup":
			if len(g) >= 3 && hasOption(g[2], "cpu") {
				out = append(out, cgroupMount{point: f[4], root: f[3]})
			}
		}
	}
	return out
}

func hasOption(opts, want string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// cgroupPath returns this process's path in the v2 hierarchy (the "0::"
// line) or in the v1 hierarchy holding the "cpu" controller.
func cgroupPath(cgroups string, v2 bool) (string, bool) {
	for line := range strings.Lines(cgroups) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if v2 && parts[0] == "0" && parts[1] == "" {
			return parts[2], true
		}
		if !v2 && hasOption(parts[1], "cpu") {
			return parts[2], true
		}
	}
	return "", false
}

// readQuota reads the CPU quota set directly on one cgroup folder.
func readQuota(readFile func(string) ([]byte, error), dir string, v2 bool) (float64, bool) {
	if v2 {
		b, err := readFile(filepath.Join(dir, "cpu.max"))
		if err != nil {
			return 0, false
		}
		f := strings.Fields(string(b))
		if len(f) != 2 || f[0] == "max" {
			return 0, false
		}
		return ratio(f[0], f[1])
	}
	q, err := readFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	if err != nil {
		return 0, false
	}
	p, err := readFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, false
	}
	return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

// ratio returns quota/period for positive integers; -1 (v1's "no limit") and
// malformed values give ok false.
func ratio(quota, period string) (float64, bool) {
	q, err := strconv.ParseInt(quota, 10, 64)
	if err != nil || q <= 0 {
		return 0, false
	}
	p, err := strconv.ParseInt(period, 10, 64)
	if err != nil || p <= 0 {
		return 0, false
	}
	return float64(q) / float64(p), true
}
