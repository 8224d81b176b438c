package serving

import (
	"errors"
	"fmt"
	"maps"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/repository"
	"github.com/onnxserve/onnxserve/internal/router"
)

// ErrConflict: the call clashes with work in progress (a model's traffic
// is held by a running rollout, or a rollout already runs); the message
// names it.
var ErrConflict = errors.New("conflict")

// ErrRejected marks a request the model failed on its data alone (batch
// fault isolation): the client's fault, counted as a model rejection.
var ErrRejected = batcher.ErrRejected

// ClaimTraffic makes owner, a description such as "rollout of version 3",
// the only writer of a model's traffic until ReleaseTraffic: SetTraffic
// and PutTraffic fail with ErrConflict naming it, and SetRouting with the
// same owner succeeds. Claiming a model another owner holds fails the same
// way; claiming it again as its owner succeeds.
func (s *Server) ClaimTraffic(name, owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.model(name); err != nil {
		return err
	}
	if cur := s.trafficOwners[name]; cur != "" && cur != owner {
		return fmt.Errorf("model %q: traffic is held by the %s: %w", name, cur, ErrConflict)
	}
	if s.trafficOwners == nil {
		s.trafficOwners = map[string]string{}
	}
	s.trafficOwners[name] = owner
	return nil
}

// ReleaseTraffic ends owner's claim on a model's traffic; a claim held by
// another owner stays.
func (s *Server) ReleaseTraffic(name, owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trafficOwners[name] == owner {
		delete(s.trafficOwners, name)
	}
}

// SetRouting replaces a model's split and shadow on behalf of owner,
// keeping its sticky key; it persists and applies them like SetTraffic. A
// nil split gives the newest ready version all traffic; a nil shadow
// mirrors nothing. owner "" is an ordinary caller, refused while another
// holds the model's traffic.
func (s *Server) SetRouting(owner, name string, split map[string]int, shadow *router.Shadow) error {
	m, err := s.model(name)
	if err != nil {
		return err
	}
	t := repository.Traffic{StickyKey: repository.DefaultStickyKey}
	if cur := m.trafficSpec(); cur != nil {
		t = cur.Clone()
	}
	t.Split = maps.Clone(split)
	t.Shadow = nil
	if shadow != nil {
		t.Shadow = &repository.Shadow{Version: shadow.Version, Percent: shadow.Percent}
	}
	return s.setTraffic(owner, name, t)
}

// heldBy returns the error SetTraffic gives a caller other than owner
// while another holds the model's traffic; s.mu is held.
func (s *Server) heldBy(name, owner string) error {
	if cur := s.trafficOwners[name]; cur != "" && cur != owner {
		return fmt.Errorf("model %q: traffic is held by the %s; abort or promote it first: %w", name, cur, ErrConflict)
	}
	return nil
}

// ShadowCounts are one version's mirrored requests by outcome since it
// loaded, for judges that compare two readings.
type ShadowCounts struct {
	Agreed, Disagreed, Failed int64
}

// shadowTally counts a version's shadow outcomes for ShadowCounts.
type shadowTally struct {
	agreed, disagreed, failed atomic.Int64
}

// VersionShadow returns a serving version's shadow counts.
func (s *Server) VersionShadow(name, ver string) (ShadowCounts, error) {
	m, err := s.model(name)
	if err != nil {
		return ShadowCounts{}, err
	}
	n, err := parseVersion(ver)
	if err != nil {
		return ShadowCounts{}, err
	}
	v, ok := m.serving.Load().byNumber[n]
	if !ok {
		return ShadowCounts{}, fmt.Errorf("model %q version %s: %w", name, ver, ErrNotReady)
	}
	return ShadowCounts{v.tally.agreed.Load(), v.tally.disagreed.Load(), v.tally.failed.Load()}, nil
}

// logRouting logs a traffic change.
func (s *Server) logRouting(name, owner string, t repository.Traffic) {
	s.log.Info("traffic changed", zap.String("model", name), zap.Any("split", t.Split), zap.String("by", owner))
}

// pinForRollout keeps the traffic where it is when a version newer than
// every serving one arrives on a model whose rollout policy is automatic
// and that has no split: it pins the split to the previous newest version
// (persisted like SetTraffic) so the new one takes no traffic until a
// rollout gives it some. ok reports a pin; candidate and baseline are then
// the new version and the pinned one. s.mu is held.
func (s *Server) pinForRollout(m *model, cur *servingSet, next map[int64]*version, cfg repository.Config) (t *repository.Traffic, candidate, baseline string, ok bool) {
	if s.cfg.OnNewVersion == nil || cfg.Rollout == nil || !cfg.Rollout.Auto || (cfg.Traffic != nil && cfg.Traffic.Split != nil) || s.trafficOwners[m.name] != "" {
		return nil, "", "", false
	}
	var prev, newest int64
	for n := range cur.byNumber {
		prev = max(prev, n)
	}
	for n := range next {
		newest = max(newest, n)
	}
	if prev == 0 || newest <= prev || next[prev] == nil {
		return nil, "", "", false
	}
	spec := repository.Traffic{StickyKey: repository.DefaultStickyKey}
	if cfg.Traffic != nil {
		spec = cfg.Traffic.Clone()
	}
	baseline, candidate = next[prev].label, next[newest].label
	spec.Split = map[string]int{baseline: 100}
	if err := repository.WriteTraffic(s.cfg.Root, m.name, spec); err != nil {
		s.log.Error("new version takes all traffic: the split could not be pinned for its rollout",
			zap.String("model", m.name), zap.String("version", candidate), zap.Error(err))
		return nil, "", "", false
	}
	m.mu.Lock()
	m.cfg.Traffic = &spec
	m.mu.Unlock()
	s.logRouting(m.name, "automatic rollout of version "+candidate, spec)
	return &spec, candidate, baseline, true
}
