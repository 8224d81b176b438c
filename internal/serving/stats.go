package serving

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// Duration is a count of events and their total time, as the v2 statistics
// extension reports them.
type Duration struct {
	Count int64
	Total time.Duration
}

// VersionStats are one version's cumulative statistics since it loaded.
type VersionStats struct {
	Name    string
	Version string
	// LastInference is when the last request finished; zero if none has.
	LastInference time.Time
	// InferenceCount is rows inferred; ExecutionCount is batches run.
	InferenceCount int64
	ExecutionCount int64
	Success        Duration // requests answered, arrival to answer
	Fail           Duration // requests failed after reaching this version
	Queue          Duration // time started requests waited in the queue
	Compute        Duration // time spent running batches
	// BatchSizes is the measurement that chose the batch cap of an auto
	// version; nil when the batch size was configured.
	BatchSizes *BatchMeasurement
}

// requestStats are the per-version request counters the request path
// updates lock-free.
type requestStats struct {
	okCount, okNs, failCount, failNs, lastNano atomic.Int64
}

func (r *requestStats) record(start time.Time, err error) {
	now := time.Now()
	d := int64(now.Sub(start))
	if err != nil {
		r.failCount.Add(1)
		r.failNs.Add(d)
	} else {
		r.okCount.Add(1)
		r.okNs.Add(d)
	}
	r.lastNano.Store(now.UnixNano())
}

// Statistics returns the statistics of a model's serving versions, or of
// one version when version is not "".
func (s *Server) Statistics(name, ver string) ([]VersionStats, error) {
	m, err := s.model(name)
	if err != nil {
		return nil, err
	}
	set := m.serving.Load()
	vs := slices.Clone(set.ready)
	if ver != "" {
		n, err := parseVersion(ver)
		if err != nil {
			return nil, err
		}
		v, ok := set.byNumber[n]
		if !ok {
			if _, known := m.known(n); known {
				return nil, fmt.Errorf("model %q version %s: %w", name, ver, ErrNotReady)
			}
			return nil, fmt.Errorf("model %q version %s: %w", name, ver, ErrVersionNotFound)
		}
		vs = []*version{v}
	}
	slices.Reverse(vs)
	out := make([]VersionStats, 0, len(vs))
	for _, v := range vs {
		b := v.batch.Stats()
		st := VersionStats{
			Name:           name,
			Version:        v.label,
			InferenceCount: b.Inferences,
			ExecutionCount: b.Executions,
			Success:        Duration{v.stats.okCount.Load(), time.Duration(v.stats.okNs.Load())},
			Fail:           Duration{v.stats.failCount.Load(), time.Duration(v.stats.failNs.Load())},
			Queue:          Duration{v.stats.okCount.Load(), b.Queue},
			Compute:        Duration{b.Executions, b.Compute},
			BatchSizes:     v.tuning,
		}
		if ns := v.stats.lastNano.Load(); ns != 0 {
			st.LastInference = time.Unix(0, ns)
		}
		out = append(out, st)
	}
	return out, nil
}
