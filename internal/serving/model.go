package serving

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/onnxserve/onnxserve/internal/repository"
)

// model is one model name with its versions. The serving set is an
// immutable snapshot replaced atomically on every change, so the request path
// takes no lock.
type model struct {
	name    string
	serving atomic.Pointer[servingSet]

	mu      sync.Mutex // guards the fields below; management path only
	entries map[int64]IndexEntry
	cfg     repository.Config
	reason  string           // a model-level problem, such as a broken config.yaml
	failed  map[int64]string // fingerprints that failed to load, not retried
}

// servingSet is what requests see: the versions that take traffic.
type servingSet struct {
	ready    []*version // newest first
	byNumber map[int64]*version
}

func newModel(name string) *model {
	m := &model{name: name, entries: map[int64]IndexEntry{}, failed: map[int64]string{}}
	m.serving.Store(&servingSet{byNumber: map[int64]*version{}})
	return m
}

func newServingSet(vs map[int64]*version) *servingSet {
	set := &servingSet{byNumber: vs}
	for _, v := range vs {
		set.ready = append(set.ready, v)
	}
	slices.SortFunc(set.ready, func(a, b *version) int { return int(b.number - a.number) })
	return set
}

// known reports whether the model has ever listed version n, and its entry.
func (m *model) known(n int64) (IndexEntry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[n]
	return e, ok
}

func (m *model) setEntry(n int64, st State, reason string) {
	m.mu.Lock()
	m.entries[n] = IndexEntry{Name: m.name, Version: fmt.Sprint(n), State: st, Reason: reason}
	m.mu.Unlock()
}

// failedBefore reports whether this exact file and config already failed
// to load, so an unchanged broken file is not retried on every rescan.
func (m *model) failedBefore(n int64, fp string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed[n] == fp
}

// pick chooses the version for one request: the named one, or the newest
// ready one.
func (m *model) pick(req *Request) (*version, error) {
	set := m.serving.Load()
	if req.Version != "" {
		n, err := parseVersion(req.Version)
		if err != nil {
			return nil, fmt.Errorf("model %q: %w", m.name, err)
		}
		if v, ok := set.byNumber[n]; ok {
			return v, nil
		}
		if _, ok := m.known(n); ok {
			return nil, fmt.Errorf("model %q version %d: %w", m.name, n, ErrNotReady)
		}
		return nil, fmt.Errorf("model %q version %d: %w", m.name, n, ErrVersionNotFound)
	}
	if len(set.ready) == 0 {
		return nil, fmt.Errorf("model %q: no ready version: %w", m.name, ErrNotReady)
	}
	return set.ready[0], nil
}
