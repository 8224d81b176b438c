package router

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

const (
	// samples is the number of keys or picks behind every statistical check.
	samples = 10_000

	// Chi-square critical values at p = 0.001 by degrees of freedom: a
	// correct table exceeds them once in a thousand seeds, and the tests
	// that use PickHash run with fixed seeds, so they are deterministic.
	chi2df1 = 10.83
	chi2df2 = 13.82
	chi2df3 = 16.27
)

// testKeys returns n distinct routing keys shaped like user ids.
func testKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}
	return keys
}

// testHashes returns n hashes from a fixed-seed PCG, standing in for keys.
func testHashes(n int, seed uint64) []uint64 {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	hs := make([]uint64, n)
	for i := range hs {
		hs[i] = r.Uint64()
	}
	return hs
}

func mustBuild(t *testing.T, spec Spec, ready ...int64) *Table {
	t.Helper()
	tab, err := Build(spec, ready)
	if err != nil {
		t.Fatalf("Build(%+v, %v): %v", spec, ready, err)
	}
	return tab
}

func split(weights ...int) Spec {
	var s Spec
	for i, w := range weights {
		s.Arms = append(s.Arms, Arm{Version: int64(i + 1), Weight: w})
	}
	return s
}

// chiSquare returns the statistic of counts against the expected shares
// (which add up to 1) over n observations. A version missing from want must
// not occur at all, so it makes the statistic infinite.
func chiSquare(counts map[int64]int, want map[int64]float64, n int) float64 {
	var x float64
	for v, c := range counts {
		if _, ok := want[v]; !ok && c > 0 {
			return math.Inf(1)
		}
	}
	for v, share := range want {
		e := share * float64(n)
		d := float64(counts[v]) - e
		x += d * d / e
	}
	return x
}

// assignments routes every key through tab and fails on a key with no arm.
func assignments(t *testing.T, tab *Table, keys []string) []int64 {
	t.Helper()
	out := make([]int64, len(keys))
	for i, k := range keys {
		v, ok := tab.Pick(k)
		if !ok {
			t.Fatalf("Pick(%q): no version", k)
		}
		out[i] = v
	}
	return out
}

func TestBuildValidation(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		wantErr bool
	}{
		{name: "empty spec", spec: Spec{}},
		{name: "two arms", spec: split(90, 10)},
		{name: "zero weight beside a positive one", spec: split(0, 10)},
		{name: "shadow only", spec: Spec{Shadow: &Shadow{Version: 3, Percent: 25}}},
		{name: "shadow percent 0", spec: Spec{Arms: split(1).Arms, Shadow: &Shadow{Version: 1, Percent: 0}}},
		{name: "shadow percent 100", spec: Spec{Arms: split(1).Arms, Shadow: &Shadow{Version: 1, Percent: 100}}},
		{name: "negative weight", spec: split(90, -10), wantErr: true},
		{name: "all weights zero", spec: split(0, 0), wantErr: true},
		{name: "single zero weight", spec: split(0), wantErr: true},
		{name: "duplicate version", spec: Spec{Arms: []Arm{{2, 50}, {1, 10}, {2, 40}}}, wantErr: true},
		{name: "version zero", spec: Spec{Arms: []Arm{{0, 10}}}, wantErr: true},
		{name: "negative version", spec: Spec{Arms: []Arm{{-1, 10}}}, wantErr: true},
		{name: "weights overflow", spec: Spec{Arms: []Arm{{1, math.MaxInt64}, {2, 1}}}, wantErr: true},
		{name: "largest total", spec: Spec{Arms: []Arm{{1, math.MaxInt64 - 1}, {2, 1}}}},
		{name: "shadow percent negative", spec: Spec{Shadow: &Shadow{Version: 1, Percent: -1}}, wantErr: true},
		{name: "shadow percent above 100", spec: Spec{Shadow: &Shadow{Version: 1, Percent: 101}}, wantErr: true},
		{name: "shadow version zero", spec: Spec{Shadow: &Shadow{Version: 0, Percent: 10}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Build(tt.spec, []int64{1, 2})
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidSpec) {
					t.Fatalf("Build: err = %v, want one wrapping ErrInvalidSpec", err)
				}
				if tab != nil {
					t.Errorf("Build returned a table with error %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if _, ok := tab.Pick("k"); !ok {
				t.Errorf("Pick on a valid table with ready arms: no version")
			}
		})
	}
}

func TestBuildDoesNotKeepCallerSlices(t *testing.T) {
	spec := split(90, 10)
	ready := []int64{1, 2}
	tab := mustBuild(t, spec, ready...)
	before := assignments(t, tab, testKeys(1000))
	spec.Arms[0].Weight = 0
	ready[0], ready[1] = 7, 8
	if after := assignments(t, tab, testKeys(1000)); !slices.Equal(before, after) {
		t.Fatalf("changing the caller's spec and ready slices changed the table")
	}
}

func TestHashStable(t *testing.T) {
	// Sticky callers keep their arm across restarts and releases only if
	// these values never change.
	tests := []struct {
		key       string
		fnv, hash uint64
	}{
		{key: "", fnv: 0xcbf29ce484222325, hash: 0xf52a15e9a9b5e89b},
		{key: "a", fnv: 0xaf63dc4c8601ec8c, hash: 0x02c0bdbf481420f8},
		{key: "user-42", fnv: 0x32c6d7a54d35dacb, hash: 0x7a1596f0e94b5793},
		{key: "x-routing-key", fnv: 0x6edd323edcdf7f4e, hash: 0x118b4634ca96e4d9},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.key), func(t *testing.T) {
			if got := fnv1a(tt.key); got != tt.fnv {
				t.Errorf("fnv1a = %#x, want %#x", got, tt.fnv)
			}
			if got := Hash(tt.key); got != tt.hash {
				t.Errorf("Hash = %#x, want %#x", got, tt.hash)
			}
		})
	}
	t.Run("mix is SplitMix64", func(t *testing.T) {
		// The first SplitMix64 output for seed 0.
		if got := mix(0x9e3779b97f4a7c15); got != 0xe220a8397b1dcdaf {
			t.Errorf("mix = %#x, want 0xe220a8397b1dcdaf", got)
		}
	})
}

func TestWeightedSplit(t *testing.T) {
	tests := []struct {
		name  string
		spec  Spec
		ready []int64
		want  map[int64]float64
		crit  float64
	}{
		{name: "90/10", spec: split(90, 10), ready: []int64{1, 2}, want: map[int64]float64{1: .9, 2: .1}, crit: chi2df1},
		{name: "10/90 small weights", spec: split(1, 9), ready: []int64{1, 2}, want: map[int64]float64{1: .1, 2: .9}, crit: chi2df1},
		{name: "50/30/20", spec: split(50, 30, 20), ready: []int64{1, 2, 3}, want: map[int64]float64{1: .5, 2: .3, 3: .2}, crit: chi2df2},
		{name: "four equal", spec: split(1, 1, 1, 1), ready: []int64{1, 2, 3, 4}, want: map[int64]float64{1: .25, 2: .25, 3: .25, 4: .25}, crit: chi2df3},
		{name: "zero-weight arm gets nothing", spec: split(3, 0, 1), ready: []int64{1, 2, 3}, want: map[int64]float64{1: .75, 3: .25}, crit: chi2df1},
		{name: "90/10 with the 90 arm unready", spec: split(90, 10), ready: []int64{2}, want: map[int64]float64{2: 1}},
		{name: "50/30/20 with 2 unready", spec: split(50, 30, 20), ready: []int64{1, 3}, want: map[int64]float64{1: 5. / 7, 3: 2. / 7}, crit: chi2df1},
		{name: "40/30/20/10 with 1 unready", spec: split(40, 30, 20, 10), ready: []int64{2, 3, 4}, want: map[int64]float64{2: .5, 3: 1. / 3, 4: 1. / 6}, crit: chi2df2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := mustBuild(t, tt.spec, tt.ready...)
			counts := map[int64]int{}
			for _, h := range testHashes(samples, 1) {
				v, ok := tab.PickHash(h)
				if !ok {
					t.Fatalf("PickHash(%#x): no version", h)
				}
				counts[v]++
			}
			if x := chiSquare(counts, tt.want, samples); x > tt.crit {
				t.Errorf("PickHash counts %v: chi-square %.2f > %.2f for shares %v", counts, x, tt.crit, tt.want)
			}
		})
	}
}

func TestKeylessPick(t *testing.T) {
	// Pick("") draws from the process-wide random source, so the bound is
	// generous: a correct table exceeds it about once in 10^7 runs.
	const crit = 35.0
	tests := []struct {
		name  string
		spec  Spec
		ready []int64
		want  map[int64]float64
	}{
		{name: "90/10", spec: split(90, 10), ready: []int64{1, 2}, want: map[int64]float64{1: .9, 2: .1}},
		{name: "50/30/20 with 2 unready", spec: split(50, 30, 20), ready: []int64{1, 3}, want: map[int64]float64{1: 5. / 7, 3: 2. / 7}},
		{name: "90/10 with the 90 arm unready", spec: split(90, 10), ready: []int64{2}, want: map[int64]float64{2: 1}},
		{name: "only zero-weight arm ready", spec: split(100, 0), ready: []int64{2}, want: map[int64]float64{2: 1}},
		{name: "two zero-weight arms ready share equally", spec: split(100, 0, 0), ready: []int64{2, 3}, want: map[int64]float64{2: .5, 3: .5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := mustBuild(t, tt.spec, tt.ready...)
			counts := map[int64]int{}
			for range samples {
				v, ok := tab.Pick("")
				if !ok {
					t.Fatal(`Pick(""): no version`)
				}
				counts[v]++
			}
			if x := chiSquare(counts, tt.want, samples); x > crit {
				t.Errorf(`Pick("") counts %v: chi-square %.2f > %.2f for shares %v`, counts, x, crit, tt.want)
			}
		})
	}
}

func TestStickyKey(t *testing.T) {
	keys := testKeys(samples)
	tab := mustBuild(t, split(50, 30, 20), 1, 2, 3)
	first := assignments(t, tab, keys)

	t.Run("same key same version", func(t *testing.T) {
		for i, k := range keys[:100] {
			for range 20 {
				if v, _ := tab.Pick(k); v != first[i] {
					t.Fatalf("Pick(%q) = %d, earlier %d", k, v, first[i])
				}
			}
		}
	})
	t.Run("same spec in another order gives the same table", func(t *testing.T) {
		spec := Spec{Arms: []Arm{{3, 20}, {1, 50}, {2, 30}}}
		other := mustBuild(t, spec, 3, 1, 2, 2)
		if got := assignments(t, other, keys); !slices.Equal(got, first) {
			t.Fatal("a rebuilt table from the same spec and ready set routes keys differently")
		}
	})
	t.Run("scaled weights keep every key", func(t *testing.T) {
		other := mustBuild(t, split(500, 300, 200), 1, 2, 3)
		if got := assignments(t, other, keys); !slices.Equal(got, first) {
			t.Fatal("multiplying every weight by 10 moved keys")
		}
	})
	t.Run("unrelated ready versions change nothing", func(t *testing.T) {
		other := mustBuild(t, split(50, 30, 20), 1, 2, 3, 4, 9)
		if got := assignments(t, other, keys); !slices.Equal(got, first) {
			t.Fatal("a ready version outside the split moved keys")
		}
	})
	t.Run("Pick is PickHash of Hash", func(t *testing.T) {
		for i, k := range keys[:1000] {
			if v, _ := tab.PickHash(Hash(k)); v != first[i] {
				t.Fatalf("PickHash(Hash(%q)) = %d, Pick = %d", k, v, first[i])
			}
		}
	})
}

// move is one key's change of arm between two tables.
type move struct{ from, to int64 }

func TestSplitChangeMovesOnlyWhatMust(t *testing.T) {
	tests := []struct {
		name     string
		before   Spec
		after    Spec
		ready    []int64
		min, max float64 // bounds on the moved fraction of keys
		allowed  []move
	}{
		{
			name:   "10/90 to 20/80",
			before: split(10, 90), after: split(20, 80), ready: []int64{1, 2},
			min: .08, max: .12, allowed: []move{{2, 1}},
		},
		{
			name:   "90/10 to 80/20",
			before: split(90, 10), after: split(80, 20), ready: []int64{1, 2},
			min: .08, max: .12, allowed: []move{{1, 2}},
		},
		{
			name:   "50/30/20 to 40/40/20",
			before: split(50, 30, 20), after: split(40, 40, 20), ready: []int64{1, 2, 3},
			min: .08, max: .12, allowed: []move{{1, 2}},
		},
		{
			name:   "50/30/20 to 50/20/30",
			before: split(50, 30, 20), after: split(50, 20, 30), ready: []int64{1, 2, 3},
			min: .08, max: .12, allowed: []move{{2, 3}},
		},
		{
			// Not neighbours: version 2's range is handed on, so twice the
			// necessary 10% moves (the limit documented on Table).
			name:   "10/10/80 to 20/10/70",
			before: split(10, 10, 80), after: split(20, 10, 70), ready: []int64{1, 2, 3},
			min: .17, max: .23, allowed: []move{{2, 1}, {3, 2}},
		},
		{
			name:   "new arm appended takes from its neighbour only",
			before: split(60, 40), after: split(60, 30, 10), ready: []int64{1, 2, 3},
			min: .08, max: .12, allowed: []move{{2, 3}},
		},
	}
	keys := testKeys(samples)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := assignments(t, mustBuild(t, tt.before, tt.ready...), keys)
			after := assignments(t, mustBuild(t, tt.after, tt.ready...), keys)
			moved := 0
			for i := range keys {
				if before[i] == after[i] {
					continue
				}
				moved++
				if m := (move{before[i], after[i]}); !slices.Contains(tt.allowed, m) {
					t.Fatalf("key %q moved %d -> %d, allowed moves %v", keys[i], m.from, m.to, tt.allowed)
				}
			}
			if f := float64(moved) / samples; f < tt.min || f > tt.max {
				t.Errorf("moved %.2f%% of keys, want %.0f%%..%.0f%%", 100*f, 100*tt.min, 100*tt.max)
			}
		})
	}
}

func TestUnreadyArmMovesOnlyItsKeys(t *testing.T) {
	tests := []struct {
		name  string
		spec  Spec
		ready []int64 // after; before, every arm is ready
		// want is the expected share, among the keys that moved, of each
		// version that absorbs them.
		want map[int64]float64
		crit float64
	}{
		{name: "90/10 with 1 unready", spec: split(90, 10), ready: []int64{2}, want: map[int64]float64{2: 1}},
		{name: "90/10 with 2 unready", spec: split(90, 10), ready: []int64{1}, want: map[int64]float64{1: 1}},
		{name: "50/30/20 with 2 unready", spec: split(50, 30, 20), ready: []int64{1, 3}, want: map[int64]float64{1: 5. / 7, 3: 2. / 7}, crit: chi2df1},
		{name: "50/30/20 with 1 unready", spec: split(50, 30, 20), ready: []int64{2, 3}, want: map[int64]float64{2: .6, 3: .4}, crit: chi2df1},
		{name: "40/30/20/10 with 2 and 4 unready", spec: split(40, 30, 20, 10), ready: []int64{1, 3}, want: map[int64]float64{1: 2. / 3, 3: 1. / 3}, crit: chi2df1},
		{name: "10/0 with 1 unready goes to the zero-weight arm", spec: split(10, 0), ready: []int64{2}, want: map[int64]float64{2: 1}},
	}
	keys := testKeys(samples)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := make([]int64, len(tt.spec.Arms))
			for i, a := range tt.spec.Arms {
				all[i] = a.Version
			}
			before := assignments(t, mustBuild(t, tt.spec, all...), keys)
			after := assignments(t, mustBuild(t, tt.spec, tt.ready...), keys)
			counts := map[int64]int{}
			moved := 0
			for i := range keys {
				if slices.Contains(tt.ready, before[i]) {
					if after[i] != before[i] {
						t.Fatalf("key %q of ready version %d moved to %d", keys[i], before[i], after[i])
					}
					continue
				}
				moved++
				counts[after[i]]++
			}
			if moved == 0 {
				t.Fatal("no key was on an unready arm; the case tests nothing")
			}
			if tt.crit == 0 {
				if len(counts) != 1 {
					t.Fatalf("moved keys went to %v, want all to %v", counts, tt.want)
				}
				for v := range counts {
					if tt.want[v] != 1 {
						t.Fatalf("moved keys went to %v, want all to %v", counts, tt.want)
					}
				}
				return
			}
			if x := chiSquare(counts, tt.want, moved); x > tt.crit {
				t.Errorf("moved keys split %v: chi-square %.2f > %.2f for shares %v", counts, x, tt.crit, tt.want)
			}
		})
	}
}

func TestReadinessChangesMoveKeysOnlyToOrFromThatArm(t *testing.T) {
	// A walk through readiness states of a four-arm split, one version
	// changing per step. Between consecutive states a key may move only
	// away from a version that turned unready or onto one that turned ready,
	// including keys that an earlier step had already redistributed.
	spec := split(40, 30, 20, 10)
	states := [][]int64{
		{1, 2, 3, 4},
		{1, 3, 4}, // 2 unready
		{1, 3},    // 4 unready too
		{3},       // 1 unready too
		{1, 3},    // 1 back
		{1, 3, 4}, // 4 back
		{1, 2, 3, 4},
	}
	keys := testKeys(samples)
	prev := assignments(t, mustBuild(t, spec, states[0]...), keys)
	for step := 1; step < len(states); step++ {
		before, after := states[step-1], states[step]
		t.Run(fmt.Sprintf("%v to %v", before, after), func(t *testing.T) {
			cur := assignments(t, mustBuild(t, spec, after...), keys)
			for i := range keys {
				if cur[i] == prev[i] {
					continue
				}
				leftUnready := !slices.Contains(after, prev[i])
				cameReady := !slices.Contains(before, cur[i])
				if !leftUnready && !cameReady {
					t.Fatalf("key %q moved %d -> %d though both stayed ready", keys[i], prev[i], cur[i])
				}
			}
			prev = cur
		})
	}
	t.Run("back to all ready restores every key", func(t *testing.T) {
		first := assignments(t, mustBuild(t, spec, states[0]...), keys)
		if !slices.Equal(prev, first) {
			t.Fatal("keys did not return to their arms once every arm was ready again")
		}
	})
}

func TestNoReadyArm(t *testing.T) {
	tests := []struct {
		name string
		tab  *Table
	}{
		{name: "split with nothing ready", tab: mustBuild(t, split(90, 10))},
		{name: "split with only other versions ready", tab: mustBuild(t, split(90, 10), 3, 4)},
		{name: "no split and nothing ready", tab: Newest(nil)},
		{name: "nil table", tab: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, ok := tt.tab.Pick("user-1"); ok {
				t.Errorf("Pick(key) = %d, true; want no version", v)
			}
			if v, ok := tt.tab.Pick(""); ok {
				t.Errorf(`Pick("") = %d, true; want no version`, v)
			}
			for _, h := range testHashes(100, 3) {
				if v, ok := tt.tab.PickHash(h); ok {
					t.Fatalf("PickHash(%#x) = %d, true; want no version", h, v)
				}
			}
			if d := tt.tab.Route("user-1"); d.OK || d.Mirror {
				t.Errorf("Route = %+v, want neither a version nor a mirror", d)
			}
			for _, s := range tt.tab.Effective() {
				if s.Percent != 0 || s.Ready {
					t.Errorf("Effective arm %+v, want unready with 0%%", s)
				}
			}
		})
	}
}

func TestNewest(t *testing.T) {
	tests := []struct {
		name  string
		tab   *Table
		want  int64
		share []ArmShare
	}{
		{name: "Newest", tab: Newest([]int64{3, 1, 2}), want: 3, share: []ArmShare{{Version: 3, Weight: 1, Ready: true, Percent: 100}}},
		{name: "Build with no arms", tab: mustBuild(t, Spec{}, 2, 7, 5), want: 7, share: []ArmShare{{Version: 7, Weight: 1, Ready: true, Percent: 100}}},
		{name: "Build with a shadow only", tab: mustBuild(t, Spec{Shadow: &Shadow{Version: 1, Percent: 50}}, 1, 2), want: 2, share: []ArmShare{{Version: 2, Weight: 1, Ready: true, Percent: 100}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.tab.Implicit() {
				t.Error("Implicit() = false for a table without a split")
			}
			for _, k := range append(testKeys(100), "") {
				if v, ok := tt.tab.Pick(k); !ok || v != tt.want {
					t.Fatalf("Pick(%q) = %d, %v; want %d", k, v, ok, tt.want)
				}
			}
			if got := tt.tab.Effective(); !slices.Equal(got, tt.share) {
				t.Errorf("Effective() = %+v, want %+v", got, tt.share)
			}
		})
	}
	t.Run("a split is not implicit", func(t *testing.T) {
		if mustBuild(t, split(1), 1).Implicit() {
			t.Error("Implicit() = true for a table with a split")
		}
	})
}

func TestShadow(t *testing.T) {
	keys := testKeys(samples)
	shadowSpec := func(percent int) Spec {
		return Spec{Arms: split(50, 50).Arms, Shadow: &Shadow{Version: 3, Percent: percent}}
	}
	mirrored := func(t *testing.T, tab *Table) []bool {
		t.Helper()
		out := make([]bool, len(keys))
		for i, k := range keys {
			v, m := tab.Shadow(k)
			if m && v != 3 {
				t.Fatalf("Shadow(%q) = %d, want version 3", k, v)
			}
			out[i] = m
		}
		return out
	}
	count := func(bs []bool) int {
		n := 0
		for _, b := range bs {
			if b {
				n++
			}
		}
		return n
	}

	tests := []struct {
		name     string
		percent  int
		ready    []int64
		min, max float64
	}{
		{name: "25 percent", percent: 25, ready: []int64{1, 2, 3}, min: .23, max: .27},
		{name: "1 percent", percent: 1, ready: []int64{1, 2, 3}, min: .005, max: .015},
		{name: "0 percent", percent: 0, ready: []int64{1, 2, 3}, min: 0, max: 0},
		{name: "100 percent", percent: 100, ready: []int64{1, 2, 3}, min: 1, max: 1},
		{name: "shadow version unready", percent: 100, ready: []int64{1, 2}, min: 0, max: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := mustBuild(t, shadowSpec(tt.percent), tt.ready...)
			first := mirrored(t, tab)
			if f := float64(count(first)) / samples; f < tt.min || f > tt.max {
				t.Errorf("keyed: mirrored %.2f%%, want %.1f%%..%.1f%%", 100*f, 100*tt.min, 100*tt.max)
			}
			if again := mirrored(t, mustBuild(t, shadowSpec(tt.percent), tt.ready...)); !slices.Equal(first, again) {
				t.Error("keyed: the same keys got different shadow decisions")
			}
			n := 0
			for range samples {
				if _, m := tab.Shadow(""); m {
					n++
				}
			}
			if f := float64(n) / samples; f < tt.min || f > tt.max {
				t.Errorf("keyless: mirrored %.2f%%, want %.1f%%..%.1f%%", 100*f, 100*tt.min, 100*tt.max)
			}
		})
	}

	t.Run("raising the percent only adds keys", func(t *testing.T) {
		low := mirrored(t, mustBuild(t, shadowSpec(10), 1, 2, 3))
		high := mirrored(t, mustBuild(t, shadowSpec(25), 1, 2, 3))
		for i := range keys {
			if low[i] && !high[i] {
				t.Fatalf("key %q mirrored at 10%% but not at 25%%", keys[i])
			}
		}
	})
	t.Run("mirrored keys are spread over the arms", func(t *testing.T) {
		tab := mustBuild(t, shadowSpec(25), 1, 2, 3)
		arm := assignments(t, tab, keys)
		m := mirrored(t, tab)
		for _, v := range []int64{1, 2} {
			on, n := 0, 0
			for i := range keys {
				if arm[i] == v {
					on++
					if m[i] {
						n++
					}
				}
			}
			if f := float64(n) / float64(on); f < .22 || f > .28 {
				t.Errorf("version %d: %.2f%% of its %d keys mirrored, want about 25%%", v, 100*f, on)
			}
		}
	})
	t.Run("ShadowHash is Shadow of Hash", func(t *testing.T) {
		tab := mustBuild(t, shadowSpec(50), 1, 2, 3)
		for _, k := range keys[:1000] {
			v1, m1 := tab.Shadow(k)
			v2, m2 := tab.ShadowHash(Hash(k))
			if v1 != v2 || m1 != m2 {
				t.Fatalf("key %q: Shadow = %d, %v; ShadowHash = %d, %v", k, v1, m1, v2, m2)
			}
		}
	})
}

func TestRoute(t *testing.T) {
	keys := testKeys(samples)
	// Version 2 is both an arm and the shadow: requests it answers itself
	// are not mirrored to it.
	spec := Spec{Arms: split(50, 50).Arms, Shadow: &Shadow{Version: 2, Percent: 100}}
	tab := mustBuild(t, spec, 1, 2)

	t.Run("keyed", func(t *testing.T) {
		for _, k := range keys {
			d := tab.Route(k)
			v, ok := tab.Pick(k)
			if d.Version != v || d.OK != ok {
				t.Fatalf("Route(%q) = %+v, Pick = %d, %v", k, d, v, ok)
			}
			wantMirror := v == 1
			if d.Mirror != wantMirror || (d.Mirror && d.Shadow != 2) {
				t.Fatalf("Route(%q) = %+v, want mirror to 2 exactly when version 1 answers", k, d)
			}
		}
	})
	t.Run("keyless", func(t *testing.T) {
		seen := map[int64]int{}
		for range samples {
			d := tab.Route("")
			if !d.OK {
				t.Fatalf(`Route("") = %+v, want a version`, d)
			}
			if d.Mirror != (d.Version == 1) {
				t.Fatalf(`Route("") = %+v, want mirror to 2 exactly when version 1 answers`, d)
			}
			seen[d.Version]++
		}
		if seen[1] == 0 || seen[2] == 0 {
			t.Errorf(`Route("") versions %v, want both arms`, seen)
		}
	})
	t.Run("keyed shadow decision matches Shadow", func(t *testing.T) {
		other := mustBuild(t, Spec{Arms: split(1).Arms, Shadow: &Shadow{Version: 4, Percent: 30}}, 1, 4)
		for _, k := range keys[:1000] {
			d := other.Route(k)
			v, m := other.Shadow(k)
			if d.Mirror != m || (m && d.Shadow != v) {
				t.Fatalf("Route(%q) = %+v, Shadow = %d, %v", k, d, v, m)
			}
		}
	})
}

func TestEffective(t *testing.T) {
	tests := []struct {
		name   string
		spec   Spec
		ready  []int64
		want   []ArmShare
		shadow *ShadowShare
	}{
		{
			name: "all ready", spec: split(90, 10), ready: []int64{1, 2},
			want: []ArmShare{{1, 90, true, 90}, {2, 10, true, 10}},
		},
		{
			name: "90 arm unready", spec: split(90, 10), ready: []int64{2},
			want: []ArmShare{{1, 90, false, 0}, {2, 10, true, 100}},
		},
		{
			name: "middle arm unready, arms given out of order",
			spec: Spec{Arms: []Arm{{3, 20}, {2, 30}, {1, 50}}}, ready: []int64{3, 1},
			want: []ArmShare{{1, 50, true, 100 * 5. / 7}, {2, 30, false, 0}, {3, 20, true, 100 * 2. / 7}},
		},
		{
			name: "zero-weight arms share when no other is ready", spec: split(10, 0, 0), ready: []int64{2, 3},
			want: []ArmShare{{1, 10, false, 0}, {2, 0, true, 50}, {3, 0, true, 50}},
		},
		{
			name: "zero-weight arm idle beside a ready one", spec: split(10, 0), ready: []int64{1, 2},
			want: []ArmShare{{1, 10, true, 100}, {2, 0, true, 0}},
		},
		{
			name: "nothing ready", spec: split(90, 10),
			want: []ArmShare{{1, 90, false, 0}, {2, 10, false, 0}},
		},
		{
			name: "with a ready shadow", spec: Spec{Arms: split(1).Arms, Shadow: &Shadow{Version: 2, Percent: 25}}, ready: []int64{1, 2},
			want:   []ArmShare{{1, 1, true, 100}},
			shadow: &ShadowShare{Version: 2, Percent: 25, Ready: true},
		},
		{
			name: "with an unready shadow", spec: Spec{Arms: split(1).Arms, Shadow: &Shadow{Version: 2, Percent: 25}}, ready: []int64{1},
			want:   []ArmShare{{1, 1, true, 100}},
			shadow: &ShadowShare{Version: 2, Percent: 25, Ready: false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := mustBuild(t, tt.spec, tt.ready...)
			got := tab.Effective()
			if len(got) != len(tt.want) {
				t.Fatalf("Effective() = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Version != w.Version || g.Weight != w.Weight || g.Ready != w.Ready || math.Abs(g.Percent-w.Percent) > 1e-9 {
					t.Errorf("Effective()[%d] = %+v, want %+v", i, g, w)
				}
			}
			got[0].Percent = -1
			if tab.Effective()[0].Percent == -1 {
				t.Error("Effective returned the table's own slice")
			}
			s, ok := tab.EffectiveShadow()
			switch {
			case tt.shadow == nil && ok:
				t.Errorf("EffectiveShadow() = %+v, true; want none", s)
			case tt.shadow != nil && (!ok || s != *tt.shadow):
				t.Errorf("EffectiveShadow() = %+v, %v; want %+v", s, ok, *tt.shadow)
			}
		})
	}
}

func TestConcurrentPickDuringSwaps(t *testing.T) {
	// Tables are read while another goroutine publishes new ones, as
	// serving does; -race checks that nothing is written after Build.
	tables := []*Table{
		mustBuild(t, split(90, 10), 1, 2),
		mustBuild(t, split(10, 90), 2),
		mustBuild(t, Spec{Arms: split(50, 50).Arms, Shadow: &Shadow{Version: 2, Percent: 50}}, 1, 2),
	}
	var cur atomic.Pointer[Table]
	cur.Store(tables[0])

	const readers, picks = 4, 2000
	errs := make(chan error, readers)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range picks {
				key := ""
				if i%2 == 0 {
					key = fmt.Sprintf("user-%d-%d", r, i)
				}
				d := cur.Load().Route(key)
				if !d.OK || (d.Version != 1 && d.Version != 2) {
					errs <- fmt.Errorf("Route(%q) = %+v, want version 1 or 2", key, d)
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range picks {
		cur.Store(tables[i%len(tables)])
	}
	wg.Wait()
	for range readers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
