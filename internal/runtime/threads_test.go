package runtime

import "testing"

func TestThreadBudget(t *testing.T) {
	type acquire struct {
		key       string
		instances int
		want      Share
	}
	cases := []struct {
		name    string
		cpus    int
		planned int
		steps   []acquire
	}{
		{"bundled models on two CPUs", 2, 4, []acquire{
			{"classifier/1", 1, Share{1, false, 4}},
			{"classifier/2", 1, Share{1, false, 4}},
			{"simple/1", 1, Share{1, false, 4}},
			{"simple_string/1", 1, Share{1, false, 4}},
		}},
		{"one model takes every CPU", 8, 1, []acquire{{"m/1", 1, Share{8, true, 1}}}},
		{"split by instances", 8, 4, []acquire{
			{"a/1", 3, Share{6, true, 4}},
			{"b/1", 1, Share{2, true, 4}},
		}},
		{"unplanned: counted as they load", 8, 0, []acquire{
			{"a/1", 1, Share{8, true, 1}},
			{"b/1", 1, Share{4, true, 2}},
			{"c/1", 2, Share{4, true, 4}},
			{"b/1", 1, Share{2, true, 4}}, // a reload replaces, does not add
		}},
		{"more instances than CPUs", 4, 0, []acquire{
			{"a/1", 4, Share{4, true, 4}},
			{"b/1", 1, Share{1, false, 5}},
		}},
		{"a plan smaller than one model", 4, 1, []acquire{{"a/1", 2, Share{4, true, 2}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := NewThreadBudget(c.cpus)
			b.Plan(c.planned)
			sum := 0
			for _, s := range c.steps {
				got, _ := b.Acquire(s.key, s.instances)
				if got != s.want {
					t.Errorf("Acquire(%s, %d) = %+v, want %+v", s.key, s.instances, got, s.want)
				}
				sum += got.IntraOpThreads
			}
			if c.planned >= len(c.steps) && c.planned <= c.cpus && sum > c.cpus {
				t.Errorf("threads sum to %d over %d CPUs", sum, c.cpus)
			}
		})
	}
}

func TestThreadBudgetRelease(t *testing.T) {
	b := NewThreadBudget(4)
	_, releaseA := b.Acquire("a/1", 1)
	old, releaseOld := b.Acquire("b/1", 1)
	if old.IntraOpThreads != 2 {
		t.Fatalf("second session got %d threads, want 2", old.IntraOpThreads)
	}
	// b/1 reloads: the new session holds the key, the old one's release
	// must not free it.
	_, releaseNew := b.Acquire("b/1", 1)
	releaseOld()
	if got, _ := b.Acquire("c/1", 2); got.Slots != 4 {
		t.Fatalf("after the old b/1 closed: %d slots, want 4 (a, the new b, c)", got.Slots)
	}
	releaseA()
	releaseA() // idempotent
	releaseNew()
	if got, _ := b.Acquire("d/1", 1); got.Slots != 3 || got.IntraOpThreads != 1 {
		t.Fatalf("after releases: %+v, want 3 slots (c's 2 and d) and 1 thread", got)
	}
}
