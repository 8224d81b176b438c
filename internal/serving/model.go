package serving

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/router"
)

// model is one model name with its versions. The serving set is an
// immutable snapshot replaced atomically on every change, so the request path
// takes no lock.
type model struct {
	name    string
	serving atomic.Pointer[servingSet]
	// seqs is the sequence store, made when a config first has
	// sequence_batching; sequential says the current config has it.
	seqs       atomic.Pointer[batcher.Sequences]
	sequential atomic.Bool

	mu      sync.Mutex // guards the fields below; management path only
	entries map[int64]IndexEntry
	cfg     repository.Config
	reason  string           // a model-level problem, such as a broken config.yaml
	failed  map[int64]string // fingerprints that failed to load, not retried
}

// servingSet is what requests see: the versions that take traffic and the
// routing table built over exactly those versions, swapped together so a
// pick never sees one without the other.
type servingSet struct {
	ready     []*version // newest first
	byNumber  map[int64]*version
	route     *router.Table
	traffic   *repository.Traffic // the configured split; nil = newest takes all
	stickyKey string
}

// newServingSet builds the set for versions vs under traffic spec t. A spec
// that does not build (it was validated, so this means a bug) falls back to
// newest-takes-all rather than failing requests.
func newServingSet(vs map[int64]*version, t *repository.Traffic) *servingSet {
	if vs == nil {
		vs = map[int64]*version{}
	}
	set := &servingSet{byNumber: vs, traffic: t, stickyKey: repository.DefaultStickyKey}
	ready := make([]int64, 0, len(vs))
	for n, v := range vs {
		set.ready = append(set.ready, v)
		ready = append(ready, n)
	}
	slices.SortFunc(set.ready, func(a, b *version) int { return cmp.Compare(b.number, a.number) })
	set.route = router.Newest(ready)
	if t != nil {
		if t.StickyKey != "" {
			set.stickyKey = t.StickyKey
		}
		if tab, err := router.Build(routerSpec(*t), ready); err == nil {
			set.route = tab
		}
	}
	return set
}

// routerSpec converts the config's traffic block to the router's terms.
func routerSpec(t repository.Traffic) router.Spec {
	var spec router.Spec
	for k, w := range t.Split {
		if n, ok := repository.ParseVersion(k); ok {
			spec.Arms = append(spec.Arms, router.Arm{Version: n, Weight: w})
		}
	}
	slices.SortFunc(spec.Arms, func(a, b router.Arm) int { return cmp.Compare(a.Version, b.Version) })
	if t.Shadow != nil {
		spec.Shadow = &router.Shadow{Version: t.Shadow.Version, Percent: t.Shadow.Percent}
	}
	return spec
}

func newModel(name string) *model {
	m := &model{name: name, entries: map[int64]IndexEntry{}, failed: map[int64]string{}}
	m.serving.Store(newServingSet(nil, nil))
	return m
}

// versionLabel returns the canonical label of the version a request named
// when the model has that version (serving or listed in the index), else
// "".
func (m *model) versionLabel(v string) string {
	if v == "" {
		return ""
	}
	n, err := parseVersion(v)
	if err != nil {
		return ""
	}
	if sv, ok := m.serving.Load().byNumber[n]; ok {
		return sv.label
	}
	if e, ok := m.known(n); ok {
		return e.Version
	}
	return ""
}

// known reports whether the model has ever listed version n, and its entry.
func (m *model) known(n int64) (IndexEntry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[n]
	return e, ok
}

// failedBefore reports whether this exact file and config already failed
// to load, so an unchanged broken file is not retried on every rescan.
func (m *model) failedBefore(n int64, fp string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed[n] == fp
}

// pick chooses the version for one request: the named one, else the
// routing table's arm for the request's key, else the newest ready version.
// mirror is the shadow version to copy the request to, if any.
func (m *model) pick(req *Request) (v *version, mirror *version, err error) {
	set := m.serving.Load()
	if req.Version != "" {
		n, err := parseVersion(req.Version)
		if err != nil {
			return nil, nil, fmt.Errorf("model %q: %w", m.name, err)
		}
		if v, ok := set.byNumber[n]; ok {
			return v, nil, nil
		}
		if _, ok := m.known(n); ok {
			return nil, nil, fmt.Errorf("model %q version %d: %w", m.name, n, ErrNotReady)
		}
		return nil, nil, fmt.Errorf("model %q version %d: %w", m.name, n, ErrVersionNotFound)
	}
	if len(set.ready) == 0 {
		return nil, nil, fmt.Errorf("model %q: no ready version: %w", m.name, ErrNotReady)
	}
	key := req.RoutingKey
	if set.traffic != nil && req.Metadata != nil {
		// The model's sticky key names the header or metadata; only a
		// configured split makes the key matter.
		if k := req.Metadata.Get(set.stickyKey); k != "" {
			key = k
		}
	}
	d := set.route.Route(key)
	v = set.ready[0]
	if d.OK {
		if pv, ok := set.byNumber[d.Version]; ok {
			v = pv
		}
	}
	v.routed.Inc()
	if d.Mirror {
		if sv, ok := set.byNumber[d.Shadow]; ok && sv != v {
			mirror = sv
		}
	}
	return v, mirror, nil
}
