package router

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// ErrInvalidSpec is wrapped by every error Build returns: the spec itself is
// impossible, whatever versions are ready.
var ErrInvalidSpec = errors.New("router: invalid traffic spec")

// Arm is one version's place in a weighted split. It is a plain value.
type Arm struct {
	// Version is the model version number, >= 1.
	Version int64
	// Weight is the arm's share relative to the other arms' weights, >= 0.
	// A zero-weight arm receives traffic only when no arm with a positive
	// weight is ready.
	Weight int
}

// Shadow mirrors a share of requests to another version, whose answers the
// caller discards. It is a plain value.
type Shadow struct {
	// Version receives the mirrored copies, >= 1.
	Version int64
	// Percent of requests mirrored, 0..100.
	Percent int
}

// Spec is the configured traffic split of one model. Build copies what it
// needs, so the caller may change or reuse a Spec afterwards; a Spec itself
// is not safe to change while another goroutine reads it.
type Spec struct {
	// Arms is the weighted split, in any order. Empty means the newest ready
	// version takes all traffic.
	Arms []Arm
	// Shadow is the mirror, or nil for none.
	Shadow *Shadow
}

// ArmShare is one arm as it stands in a Table: what was configured and the
// share of requests it receives now that unready arms are skipped. It is a
// plain value.
type ArmShare struct {
	// Version is the arm's model version.
	Version int64
	// Weight is the configured weight (1 for the implicit newest-takes-all
	// arm of a table built without a split).
	Weight int
	// Ready reports whether the version was ready when the table was built.
	Ready bool
	// Percent is the share of requests the arm receives, 0..100; the
	// percentages of a table with a ready arm add up to 100.
	Percent float64
}

// ShadowShare is the shadow as it stands in a Table. It is a plain value.
type ShadowShare struct {
	// Version receives the mirrored copies.
	Version int64
	// Percent of requests mirrored while Version is ready.
	Percent int
	// Ready reports whether Version was ready when the table was built; an
	// unready shadow mirrors nothing.
	Ready bool
}

// Decision is where one request goes. It is a plain value.
type Decision struct {
	// Version answers the request; valid when OK.
	Version int64
	// OK is false only when no arm is ready.
	OK bool
	// Shadow receives a mirrored copy; valid when Mirror.
	Shadow int64
	// Mirror reports whether to send the copy. It is never true when the
	// shadow version is the version that answers.
	Mirror bool
}

// Table is an immutable routing snapshot of one model: a Spec resolved
// against the versions that were ready when it was built. Rebuild it with
// Build whenever the spec or the ready set changes, and publish the new one
// atomically (for example through an atomic.Pointer). A Table is safe for
// concurrent use; its methods take no lock and the routing ones do not
// allocate. A nil *Table routes nothing.
//
// Sticky keys are placed by consistent hashing. The arms with a positive
// weight, in ascending version order, cut the 64-bit hash space into
// consecutive ranges whose sizes are proportional to their weights, and a
// key's hash is a point in that space. Moving weight between two arms that
// are next to each other in version order (which covers every two-arm split)
// therefore moves exactly the keys that must move, all of them from the arm
// that shrank to the arm that grew. Moving weight between arms that are not
// neighbours also shifts the range of every arm between them, each handing
// the moved share on to the next, so a move across k arms moves k+1 times
// what must move. No placement that is a function of the split alone can
// move only what must move for every change once there are three arms; this
// one is exact for the usual step of shifting weight between two versions
// that follow each other.
//
// A key whose range belongs to an unready arm is placed among the ready arms
// by weighted rendezvous hashing: each ready arm draws an exponential score
// from a hash of the key and its own version, scaled by its weight, and the
// lowest score wins. This gives the ready arms the unready arm's share in
// proportion to their weights, and because an arm's score does not depend on
// which other arms are ready, a change in readiness moves keys only to or
// from the arm whose readiness changed, and a key whose own range belongs
// to a ready arm never moves.
type Table struct {
	shares   []ArmShare
	implicit bool

	// primary is the layout of the positive-weight arms, ready or not;
	// primaryReady is indexed like primary.versions.
	primary      layout
	primaryReady []bool
	// spare places the keys of unready primary arms among the ready arms.
	spare []spareArm
	// ready is the layout of the ready arms alone, for keyless picks.
	ready layout

	shadow      ShadowShare
	hasShadow   bool
	shadowOn    bool   // configured, percent > 0 and the version is ready
	shadowAll   bool   // percent == 100
	shadowBelow uint64 // mirror when the shadow point is below this
}

// spareArm is a ready arm as a candidate of the rendezvous placement.
type spareArm struct {
	version int64
	weight  float64
	salt    uint64
}

// layout cuts the hash space into consecutive ranges, one per version, sized
// by weight.
type layout struct {
	versions []int64
	// bounds[i] is the exclusive upper end of versions[i]'s range; the last
	// version's range runs to the end of the space and has no bound.
	bounds []uint64
}

// newLayout builds the layout of versions with the given positive weights,
// whose sum must not exceed math.MaxInt64.
func newLayout(versions []int64, weights []uint64) layout {
	l := layout{versions: versions}
	if len(versions) < 2 {
		return l
	}
	var total uint64
	for _, w := range weights {
		total += w
	}
	l.bounds = make([]uint64, len(versions)-1)
	var cum uint64
	for i := range l.bounds {
		cum += weights[i]
		// cum < total because every later weight is positive, and the
		// ranges cannot collapse: total <= 2^63, so each range is at least
		// two points wide.
		l.bounds[i] = fraction(cum, total)
	}
	return l
}

// at returns the index of the version whose range holds the point h.
func (l *layout) at(h uint64) int {
	lo, hi := 0, len(l.bounds)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if h < l.bounds[mid] {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// Build resolves spec against the versions ready now (in any order,
// duplicates allowed; ready versions that spec does not name are ignored
// unless spec has no arms, in which case the newest of them takes all
// traffic). It fails, wrapping ErrInvalidSpec, when a version is below 1, an
// arm's version repeats, a weight is negative, the weights are all zero or
// their sum overflows, or the shadow percent is outside 0..100. An arm or
// shadow that is not ready is not an error: it is skipped until a table is
// built in which it is ready.
func Build(spec Spec, ready []int64) (*Table, error) {
	arms := slices.Clone(spec.Arms)
	slices.SortFunc(arms, func(a, b Arm) int { return cmp.Compare(a.Version, b.Version) })
	var total uint64
	for i, a := range arms {
		if a.Version < 1 {
			return nil, fmt.Errorf("arm version %d: must be >= 1: %w", a.Version, ErrInvalidSpec)
		}
		if i > 0 && arms[i-1].Version == a.Version {
			return nil, fmt.Errorf("arm version %d: named twice: %w", a.Version, ErrInvalidSpec)
		}
		if a.Weight < 0 {
			return nil, fmt.Errorf("arm version %d: weight %d is negative: %w", a.Version, a.Weight, ErrInvalidSpec)
		}
		if uint64(a.Weight) > math.MaxInt64-total {
			return nil, fmt.Errorf("arm version %d: weights sum past %d: %w", a.Version, int64(math.MaxInt64), ErrInvalidSpec)
		}
		total += uint64(a.Weight)
	}
	if len(arms) > 0 && total == 0 {
		return nil, fmt.Errorf("all %d arm weights are 0: %w", len(arms), ErrInvalidSpec)
	}
	if s := spec.Shadow; s != nil {
		if s.Version < 1 {
			return nil, fmt.Errorf("shadow version %d: must be >= 1: %w", s.Version, ErrInvalidSpec)
		}
		if s.Percent < 0 || s.Percent > 100 {
			return nil, fmt.Errorf("shadow percent %d: must be in 0..100: %w", s.Percent, ErrInvalidSpec)
		}
	}
	return newTable(arms, spec.Shadow, ready), nil
}

// Newest returns the table of a model without a configured split or shadow:
// the newest of the ready versions (in any order) takes all traffic. It is
// Build(Spec{}, ready), which cannot fail, and lets callers route every
// model through a Table.
func Newest(ready []int64) *Table {
	return newTable(nil, nil, ready)
}

// newTable builds the table of a valid spec whose arms are sorted by
// version.
func newTable(arms []Arm, shadow *Shadow, ready []int64) *Table {
	readySet := slices.Clone(ready)
	slices.Sort(readySet)
	isReady := func(v int64) bool {
		_, found := slices.BinarySearch(readySet, v)
		return found
	}

	t := &Table{}
	if len(arms) == 0 {
		t.implicit = true
		if n := len(readySet); n > 0 {
			arms = []Arm{{Version: readySet[n-1], Weight: 1}}
		}
	}
	t.build(arms, isReady)

	if shadow != nil {
		t.hasShadow = true
		t.shadow = ShadowShare{Version: shadow.Version, Percent: shadow.Percent, Ready: isReady(shadow.Version)}
		t.shadowOn = shadow.Percent > 0 && t.shadow.Ready
		t.shadowAll = shadow.Percent == 100
		if shadow.Percent < 100 {
			t.shadowBelow = fraction(uint64(shadow.Percent), 100)
		}
	}
	return t
}

// build fills the layouts and shares from arms, sorted by version and valid.
func (t *Table) build(arms []Arm, isReady func(int64) bool) {
	t.shares = make([]ArmShare, len(arms))
	var (
		primVersions []int64
		primWeights  []uint64
		readyPos     []int // indexes into arms of ready positive-weight arms
		readyZero    []int // indexes into arms of ready zero-weight arms
	)
	for i, a := range arms {
		r := isReady(a.Version)
		t.shares[i] = ArmShare{Version: a.Version, Weight: a.Weight, Ready: r}
		if a.Weight > 0 {
			primVersions = append(primVersions, a.Version)
			primWeights = append(primWeights, uint64(a.Weight))
			t.primaryReady = append(t.primaryReady, r)
		}
		switch {
		case r && a.Weight > 0:
			readyPos = append(readyPos, i)
		case r:
			readyZero = append(readyZero, i)
		}
	}
	t.primary = newLayout(primVersions, primWeights)

	// When every ready arm has weight 0 they share the traffic equally:
	// serving some ready version beats failing while one is ready.
	candidates, equal := readyPos, false
	if len(candidates) == 0 {
		candidates, equal = readyZero, true
	}
	readyVersions := make([]int64, len(candidates))
	readyWeights := make([]uint64, len(candidates))
	t.spare = make([]spareArm, len(candidates))
	var sum uint64
	for j, i := range candidates {
		w := uint64(1)
		if !equal {
			w = uint64(arms[i].Weight)
		}
		readyVersions[j] = arms[i].Version
		readyWeights[j] = w
		t.spare[j] = spareArm{
			version: arms[i].Version,
			weight:  float64(w),
			salt:    mix(uint64(arms[i].Version) ^ armSalt),
		}
		sum += w
	}
	t.ready = newLayout(readyVersions, readyWeights)
	for j, i := range candidates {
		t.shares[i].Percent = 100 * float64(readyWeights[j]) / float64(sum)
	}
}

// Pick returns the version that answers a request with routing key key, and
// ok=false only when no arm is ready. A non-empty key always gets the same
// version from tables built from the same spec and ready set (see Table for
// how it moves when they change); an empty key gets a weighted random pick
// among the ready arms.
func (t *Table) Pick(key string) (version int64, ok bool) {
	if key == "" {
		return t.pickRandom()
	}
	return t.PickHash(Hash(key))
}

// PickHash is Pick for a key whose Hash is h: a deterministic function of h,
// the spec and the ready set.
func (t *Table) PickHash(h uint64) (version int64, ok bool) {
	if t == nil || len(t.primary.versions) == 0 {
		return 0, false
	}
	i := t.primary.at(h)
	if t.primaryReady[i] {
		return t.primary.versions[i], true
	}
	return t.redistribute(h)
}

// redistribute places the key hash h, whose primary arm is unready, among
// the ready arms by weighted rendezvous hashing.
func (t *Table) redistribute(h uint64) (int64, bool) {
	switch len(t.spare) {
	case 0:
		return 0, false
	case 1:
		return t.spare[0].version, true
	}
	best, bestScore := 0, math.Inf(1)
	for i := range t.spare {
		a := &t.spare[i]
		// A uniform point in (0, 1) from the top 53 bits, then an
		// exponential arrival time with rate a.weight: the first arrival
		// among the arms falls on each with probability proportional to its
		// weight.
		u := (float64(mix(h+a.salt)>>11) + 0.5) * 0x1p-53
		if score := -math.Log(u) / a.weight; score < bestScore {
			best, bestScore = i, score
		}
	}
	return t.spare[best].version, true
}

func (t *Table) pickRandom() (int64, bool) {
	if t == nil || len(t.ready.versions) == 0 {
		return 0, false
	}
	return t.ready.versions[t.ready.at(rand.Uint64())], true
}

// Shadow reports whether to mirror a request with routing key key, and to
// which version. A non-empty key always gets the same answer from tables with
// the same shadow (raising the percent only adds keys); an empty key is
// mirrored at random with the configured probability. It does not know which
// version answers the request: Route also skips the mirror when that is the
// shadow version itself.
func (t *Table) Shadow(key string) (version int64, mirror bool) {
	if key == "" {
		return t.shadowAt(rand.Uint64())
	}
	return t.ShadowHash(Hash(key))
}

// ShadowHash is Shadow for a key whose Hash is h.
func (t *Table) ShadowHash(h uint64) (version int64, mirror bool) {
	// The shadow point is a second hash of h so that the mirrored keys are
	// spread over all arms instead of being one arm's range.
	return t.shadowAt(mix(h ^ shadowSalt))
}

func (t *Table) shadowAt(p uint64) (int64, bool) {
	if t == nil || !t.shadowOn {
		return 0, false
	}
	if t.shadowAll || p < t.shadowBelow {
		return t.shadow.Version, true
	}
	return 0, false
}

// Route makes both decisions for a request with routing key key, hashing it
// once: Pick's version, and Shadow's mirror unless the request has no version
// or the shadow version is the one that answers it.
func (t *Table) Route(key string) Decision {
	var (
		d      Decision
		sv     int64
		mirror bool
	)
	if key == "" {
		d.Version, d.OK = t.pickRandom()
		sv, mirror = t.shadowAt(rand.Uint64())
	} else {
		h := Hash(key)
		d.Version, d.OK = t.PickHash(h)
		sv, mirror = t.ShadowHash(h)
	}
	if d.OK && mirror && sv != d.Version {
		d.Shadow, d.Mirror = sv, true
	}
	return d
}

// Effective returns each arm in ascending version order with its configured
// weight, readiness and the share of requests it receives. A table built
// without a split reports the newest ready version with weight 1 and 100%,
// or nothing when no version is ready. The slice is the caller's.
func (t *Table) Effective() []ArmShare {
	if t == nil {
		return nil
	}
	return slices.Clone(t.shares)
}

// Implicit reports whether the table was built without a split, so that the
// newest ready version takes all traffic.
func (t *Table) Implicit() bool {
	return t == nil || t.implicit
}

// EffectiveShadow returns the configured shadow and whether it is ready, or
// ok=false when none is configured.
func (t *Table) EffectiveShadow() (s ShadowShare, ok bool) {
	if t == nil || !t.hasShadow {
		return ShadowShare{}, false
	}
	return t.shadow, true
}
