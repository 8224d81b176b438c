package main

import (
	"path/filepath"
	"strconv"
	"testing"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/runtime"
)

// TestThreadDivision: the bundled models (four versions, one instance
// each) on two CPUs get one intra-op thread each and no spinning, where
// each used to get a pool of every CPU, spinning; a config.yaml that sets
// either keeps its value.
func TestThreadDivision(t *testing.T) {
	snap, err := repository.Scan(filepath.Join("..", "..", "models"))
	if err != nil {
		t.Fatal(err)
	}
	if got := instanceSlots(snap); got != 4 {
		t.Fatalf("bundled models: %d instance slots, want 4 (classifier 1 and 2, simple, simple_string)", got)
	}
	on := true
	cases := []struct {
		name     string
		cpus     int
		in       repository.Instances
		threads  int
		spinning bool
	}{
		{"two CPUs", 2, repository.Instances{Count: 1}, 1, false},
		{"eight CPUs", 8, repository.Instances{Count: 1}, 2, true},
		{"two instances on eight CPUs", 8, repository.Instances{Count: 2}, 4, true},
		{"threads set", 2, repository.Instances{Count: 1, IntraOpThreads: 3}, 3, false},
		{"spinning set", 2, repository.Instances{Count: 1, AllowSpinning: &on}, 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := &ortLoader{threads: runtime.NewThreadBudget(c.cpus), log: zap.NewNop()}
			l.threads.Plan(instanceSlots(snap))
			sum := 0
			for _, m := range snap.Models {
				for _, v := range m.Selected {
					in := m.Config.Instances
					if m.Name == "classifier" {
						in = c.in
					}
					opts, release := l.options(filepath.Join(m.Dir, strconv.FormatInt(v, 10), repository.ModelFileName), in)
					t.Cleanup(release)
					if m.Name == "classifier" && (opts.IntraOpThreads != c.threads || *opts.AllowSpinning != c.spinning) {
						t.Errorf("classifier v%d: %d threads, spinning %v; want %d, %v", v, opts.IntraOpThreads, *opts.AllowSpinning, c.threads, c.spinning)
					}
					sum += opts.IntraOpThreads
				}
			}
			if c.in.IntraOpThreads == 0 && c.in.Count == 1 && sum > c.cpus && c.cpus >= 4 {
				t.Errorf("threads sum to %d over %d CPUs", sum, c.cpus)
			}
		})
	}
}
