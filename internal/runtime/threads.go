package runtime

import "sync"

// ThreadBudget divides the CPUs the process may use among the sessions it
// loads. Each ONNX Runtime session owns its intra-op thread pool (the
// environment is created without global thread pools, and onnxruntime_go
// offers no way to create one), so a pool per session sized to every CPU
// would put several times the CPU quota's threads on it.
//
// The division: every instance (a batch the serving core may run at once on
// a session) is one slot; a session with n instances out of S slots in all
// gets max(1, cpus*n/S) intra-op threads. While S <= cpus the sessions'
// threads sum to at most cpus. Beyond that every session gets one thread:
// ONNX Runtime then starts no pool at all and runs each operator on the
// calling thread, so the threads at work are the instances running, which
// the batchers bound. Spinning, by default, is on only while S <= cpus: a
// spinning idle thread burns CPU that other sessions' runs need.
//
// S is the planned slot count when the caller set one (Plan, from the
// repository the server follows), else the slots of the sessions holding a
// share plus the new one. A ThreadBudget is safe for concurrent use.
type ThreadBudget struct {
	cpus int

	mu      sync.Mutex
	planned int
	live    map[string]*holder // by key: the latest session's slots
}

// holder is one session's hold on its slots.
type holder struct{ slots int }

// Share is what one session gets from a ThreadBudget.
type Share struct {
	// IntraOpThreads is the session's intra-op pool size, >= 1.
	IntraOpThreads int
	// AllowSpinning is the default spinning setting for the session.
	AllowSpinning bool
	// Slots is the slot count the division used.
	Slots int
}

// NewThreadBudget divides cpus (at least 1; AvailableCPUs outside tests).
func NewThreadBudget(cpus int) *ThreadBudget {
	return &ThreadBudget{cpus: max(cpus, 1), live: map[string]*holder{}}
}

// CPUs is the number of CPUs divided.
func (b *ThreadBudget) CPUs() int { return b.cpus }

// Plan sets the slot count of every session the server means to hold (0:
// none planned; the sessions holding a share are counted instead).
func (b *ThreadBudget) Plan(slots int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.planned = max(slots, 0)
}

// Acquire returns the share of a session with the given number of
// instances, known by key (its model file), and a release to call once the
// session is closed. Acquiring a key again (a reload) replaces its slots
// rather than adding to them.
func (b *ThreadBudget) Acquire(key string, instances int) (Share, func()) {
	instances = max(instances, 1)
	b.mu.Lock()
	defer b.mu.Unlock()
	slots := b.planned
	if slots == 0 {
		slots = instances
		for k, h := range b.live {
			if k != key {
				slots += h.slots
			}
		}
	}
	slots = max(slots, instances)
	h := &holder{slots: instances}
	b.live[key] = h
	var once sync.Once
	release := func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			// A reload of the same key holds the slots now.
			if b.live[key] == h {
				delete(b.live, key)
			}
		})
	}
	return Share{IntraOpThreads: max(1, b.cpus*instances/slots), AllowSpinning: slots <= b.cpus, Slots: slots}, release
}
