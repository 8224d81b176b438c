package runtime

import (
	"io/fs"
	goruntime "runtime"
	"testing"
)

func TestAvailableCPUs(t *testing.T) {
	n := AvailableCPUs()
	if n < 1 || n > goruntime.NumCPU() {
		t.Errorf("AvailableCPUs() = %d, want 1..%d", n, goruntime.NumCPU())
	}
}

func TestCgroupCPUQuota(t *testing.T) {
	const (
		v2Mount = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
		v1Mount = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n" +
			"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	)
	tests := []struct {
		name   string
		files  map[string]string
		want   float64
		wantOK bool
	}{
		{
			name: "v2 quota on own cgroup",
			files: map[string]string{
				"/proc/self/mountinfo":               v2Mount,
				"/proc/self/cgroup":                  "0::/pod/app\n",
				"/sys/fs/cgroup/pod/app/cpu.max":     "150000 100000\n",
				"/sys/fs/cgroup/pod/cpu.max":         "max 100000\n",
				"/sys/fs/cgroup/cpu.max":             "max 100000\n",
				"/sys/fs/cgroup/pod/app/cpu.weight":  "100\n",
				"/sys/fs/cgroup/unrelated/cpu.max":   "10000 100000\n",
				"/sys/fs/cgroup/pod/other/cpu.max":   "10000 100000\n",
				"/sys/fs/cgroup/pod/app/cgroup.type": "domain\n",
			},
			want: 1.5, wantOK: true,
		},
		{
			name: "v2 smaller quota on a parent",
			files: map[string]string{
				"/proc/self/mountinfo":           v2Mount,
				"/proc/self/cgroup":              "0::/pod/app\n",
				"/sys/fs/cgroup/pod/app/cpu.max": "400000 100000\n",
				"/sys/fs/cgroup/pod/cpu.max":     "200000 100000\n",
			},
			want: 2, wantOK: true,
		},
		{
			name: "v2 namespaced root",
			files: map[string]string{
				"/proc/self/mountinfo":   v2Mount,
				"/proc/self/cgroup":      "0::/\n",
				"/sys/fs/cgroup/cpu.max": "50000 100000\n",
			},
			want: 0.5, wantOK: true,
		},
		{
			name: "v2 no limit",
			files: map[string]string{
				"/proc/self/mountinfo":   v2Mount,
				"/proc/self/cgroup":      "0::/\n",
				"/sys/fs/cgroup/cpu.max": "max 100000\n",
			},
		},
		{
			name: "v1 quota",
			files: map[string]string{
				"/proc/self/mountinfo": v1Mount,
				"/proc/self/cgroup":    "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n",
				"/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us":  "300000\n",
				"/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
			},
			want: 3, wantOK: true,
		},
		{
			name: "v1 unlimited",
			files: map[string]string{
				"/proc/self/mountinfo":                         v1Mount,
				"/proc/self/cgroup":                            "3:cpu,cpuacct:/\n",
				"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "-1\n",
				"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
			},
		},
		{
			name: "v1 mount showing only the container's part of the hierarchy",
			files: map[string]string{
				"/proc/self/mountinfo":                 "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
				"/proc/self/cgroup":                    "3:cpu:/docker/abc\n",
				"/sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "100000\n",
				"/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
			},
			want: 1, wantOK: true,
		},
		{
			name: "malformed",
			files: map[string]string{
				"/proc/self/mountinfo":   v2Mount,
				"/proc/self/cgroup":      "0::/\n",
				"/sys/fs/cgroup/cpu.max": "lots\n",
			},
		},
		{name: "no cgroup files", files: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := func(p string) ([]byte, error) {
				if s, ok := tt.files[p]; ok {
					return []byte(s), nil
				}
				return nil, fs.ErrNotExist
			}
			got, ok := cgroupCPUQuota(read)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("cgroupCPUQuota() = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
