package repository

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// DefaultSettle is the Watcher's default settle interval: the least time
// between two checks, and so how long a model file must stay unchanged to
// count as completely written.
const DefaultSettle = 250 * time.Millisecond

// Watcher follows a repository on disk and reports each change of what
// should be served. File system notifications trigger checks quickly; a
// periodic rescan catches whatever notifications miss (network file
// systems, an overflowing event queue, no inotify at all).
//
// A model file is reported only once it is stable: the same size and
// modification time in two consecutive checks at least the settle interval
// apart, so a version folder still being copied is never reported half
// written. Until then a new file is left out; a file being rewritten in
// place, and a config.yaml being rewritten, keep their last reported state.
//
// A Watcher's methods are safe for concurrent use, but Run runs once at a
// time.
type Watcher struct {
	root     string
	interval time.Duration
	settle   time.Duration
	log      *zap.Logger
	running  atomic.Bool

	// pollOnly and afterScan let tests exercise the rescan fallback and
	// observe each raw scan.
	pollOnly  bool
	afterScan func(Snapshot)

	// published is the snapshot the caller applied before Run, if any.
	published *Snapshot
}

// WatcherOption changes a Watcher's defaults in NewWatcher.
type WatcherOption func(*Watcher)

// WithSettle sets the settle interval (DefaultSettle when not given); it
// must be > 0.
func WithSettle(d time.Duration) WatcherOption {
	return func(w *Watcher) { w.settle = d }
}

// WithPublished tells the Watcher the snapshot its caller already applied
// (a startup Scan). Run then treats it as published: a model whose
// config.yaml is rewritten during the first settle interval (a traffic
// change just after startup) keeps that state instead of being left out
// of the first snapshot, which would unload it.
func WithPublished(s Snapshot) WatcherOption {
	return func(w *Watcher) { w.published = &s }
}

// NewWatcher returns a Watcher for the repository at root that rescans it
// every interval besides reacting to notifications. log may be nil.
func NewWatcher(root string, interval time.Duration, log *zap.Logger, opts ...WatcherOption) (*Watcher, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("repository watcher: rescan interval must be > 0, got %s", interval)
	}
	r, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	w := &Watcher{root: r.abs, interval: interval, settle: DefaultSettle, log: log}
	for _, o := range opts {
		o(w)
	}
	if w.settle <= 0 {
		return nil, fmt.Errorf("repository watcher: settle interval must be > 0, got %s", w.settle)
	}
	return w, nil
}

// Run follows the repository until ctx is done, calling onChange with the
// first complete Snapshot (after one settle interval) and then with each
// Snapshot that differs from the one before. onChange runs on Run's
// goroutine: while it runs nothing is checked, and whatever changed
// meanwhile is seen by the next check; it should return promptly once ctx
// is done. onChange must not modify the Snapshot. Run returns once every goroutine it
// started has ended. Calling Run while another Run of the same Watcher is
// running panics.
func (w *Watcher) Run(ctx context.Context, onChange func(Snapshot)) {
	if !w.running.CompareAndSwap(false, true) {
		panic("repository: Watcher.Run called while already running")
	}
	defer w.running.Store(false)

	n := &notifier{}
	if !w.pollOnly {
		n = newNotifier(w.root, w.log)
	}
	defer n.close()

	// Every check goes through timer, scheduled no sooner than settle
	// after the previous one: that spacing is what makes two equal
	// fingerprints mean "stable", and it coalesces bursts of events.
	timer := time.NewTimer(0)
	defer timer.Stop()
	due := time.Now()
	var lastCheck time.Time
	request := func() {
		now := time.Now()
		want := lastCheck.Add(w.settle)
		if want.Before(now) {
			want = now
		}
		if !due.IsZero() && !want.Before(due) {
			return
		}
		due = want
		timer.Reset(want.Sub(now))
	}
	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()

	var st stabilizer
	st.last = w.published
	var lastScanErr string
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-n.events:
			if !ok {
				n.events = nil
				continue
			}
			w.log.Debug("repository event", zap.Stringer("event", ev))
			request()
		case err, ok := <-n.errs:
			if !ok {
				n.errs = nil
				continue
			}
			// Overflow or a read error: events were lost, a rescan finds them.
			w.log.Warn("repository notifications", zap.Error(err))
			request()
		case <-ticker.C:
			request()
		case <-timer.C:
			due = time.Time{}
			lastCheck = time.Now()
			snap, err := Scan(w.root)
			if err != nil {
				// Keep the last published state: an unreadable root is
				// more likely a passing problem than "unload everything".
				if err.Error() != lastScanErr {
					w.log.Warn("repository scan failed; keeping the current models", zap.Error(err))
					lastScanErr = err.Error()
				}
				continue
			}
			lastScanErr = ""
			if w.afterScan != nil {
				w.afterScan(snap)
			}
			n.sync(snap)
			before := st.last
			out, unstable, publish := st.next(snap)
			if unstable {
				request()
			}
			if publish {
				w.logProblems(before, out)
				onChange(out)
			}
		}
	}
}

// logProblems logs each problem of cur that prev did not have, so a broken
// config is reported once, not on every check.
func (w *Watcher) logProblems(prev *Snapshot, cur Snapshot) {
	known := map[string]bool{}
	if prev != nil {
		for _, e := range snapshotErrors(*prev) {
			known[e] = true
		}
	}
	for _, e := range snapshotErrors(cur) {
		if !known[e] {
			w.log.Warn("repository problem", zap.String("problem", e))
		}
	}
	w.log.Info("repository changed", zap.Int("models", len(cur.Models)))
}

func snapshotErrors(s Snapshot) []string {
	var out []string
	for _, e := range s.Problems {
		out = append(out, e.Error())
	}
	for _, m := range s.Models {
		if m.Err != nil {
			out = append(out, m.Err.Error())
		}
		for _, e := range m.Problems {
			out = append(out, e.Error())
		}
		for _, v := range m.Versions {
			if v.Err != nil {
				out = append(out, v.Err.Error())
			}
		}
	}
	return out
}

// stabilizer turns raw scans into the snapshots to publish. It is used by
// one goroutine only.
type stabilizer struct {
	prev *Snapshot // the previous raw scan
	last *Snapshot // the last published snapshot
}

// next takes a scan made at least the settle interval after the previous
// one. It returns the snapshot to publish, whether something was left out
// or held back as still changing (so another check is due), and whether out
// must be published: the first time, then whenever it differs from the last
// published one.
func (s *stabilizer) next(cur Snapshot) (out Snapshot, unstable, publish bool) {
	prev := s.prev
	s.prev = &cur
	if prev == nil {
		// Nothing to compare with: no file is known to be complete yet.
		return Snapshot{}, true, false
	}
	out = Snapshot{Root: cur.Root, Problems: cur.Problems}
	for _, m := range cur.Models {
		pm, inPrev := prev.Model(m.Name)
		var pub Model
		inPub := false
		if s.last != nil {
			pub, inPub = s.last.Model(m.Name)
		}
		if !inPrev || !sameModelConfig(pm, m) {
			// config.yaml may be half written: keep the model as it
			// was, or leave a new one out until it settles.
			unstable = true
			if inPub {
				out.Models = append(out.Models, pub)
			}
			continue
		}
		nm := m
		nm.Versions = nil
		var ready []int64
		for _, v := range m.Versions {
			keep := v
			if pv, ok := findVersion(pm, v.Number); !ok || !sameVersion(pv, v) {
				unstable = true
				qv, ok := findVersion(pub, v.Number)
				if !inPub || !ok {
					continue
				}
				keep = qv
			}
			nm.Versions = append(nm.Versions, keep)
			if keep.Err == nil {
				ready = append(ready, keep.Number)
			}
		}
		nm.Selected = nil
		if nm.Err == nil {
			nm.Selected = nm.Config.VersionPolicy.Select(ready)
		}
		out.Models = append(out.Models, nm)
	}
	publish = s.last == nil || !sameSnapshot(*s.last, out)
	if publish {
		s.last = &out
	}
	return out, unstable, publish
}

func findVersion(m Model, n int64) (Version, bool) {
	i := slices.IndexFunc(m.Versions, func(v Version) bool { return v.Number == n })
	if i < 0 {
		return Version{}, false
	}
	return m.Versions[i], true
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func sameErrors(a, b []error) bool {
	return slices.EqualFunc(a, b, func(x, y error) bool { return errText(x) == errText(y) })
}

func sameModelConfig(a, b Model) bool {
	return a.Dir == b.Dir && a.ConfigHash == b.ConfigHash && errText(a.Err) == errText(b.Err)
}

func sameVersion(a, b Version) bool {
	return a.Number == b.Number && a.Path == b.Path && a.Fingerprint.Equal(b.Fingerprint) && errText(a.Err) == errText(b.Err)
}

func sameSnapshot(a, b Snapshot) bool {
	return a.Root == b.Root && sameErrors(a.Problems, b.Problems) &&
		slices.EqualFunc(a.Models, b.Models, func(x, y Model) bool {
			return x.Name == y.Name && sameModelConfig(x, y) &&
				slices.Equal(x.Selected, y.Selected) &&
				sameErrors(x.Problems, y.Problems) &&
				slices.EqualFunc(x.Versions, y.Versions, sameVersion)
		})
}

// notifier holds the fsnotify watches of the root, each model folder and
// each version folder. Without fsnotify (no inotify instances left, say)
// its channels are nil and the Watcher polls.
//
// fsnotify's own channels are read by a goroutine of the notifier's
// (drain), never by the Watcher's loop: fsnotify may hold its lock while it
// sends on them (a watched folder moved away), and the loop also calls Add
// and Remove, which take that lock, so a loop reading the channels itself
// can deadlock with fsnotify. drain hands on at most one pending event and
// one pending error; the loop only needs to know that something happened,
// and its scan finds what.
type notifier struct {
	fsw     *fsnotify.Watcher
	log     *zap.Logger
	root    string
	watched map[string]bool
	events  <-chan fsnotify.Event
	errs    <-chan error
	drained chan struct{} // closed once drain has returned
}

func newNotifier(root string, log *zap.Logger) *notifier {
	n := &notifier{log: log, root: root, watched: map[string]bool{}}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("repository notifications unavailable; rescanning periodically only", zap.Error(err))
		return n
	}
	events, errs := make(chan fsnotify.Event, 1), make(chan error, 1)
	n.fsw, n.events, n.errs, n.drained = fsw, events, errs, make(chan struct{})
	go n.drain(events, errs)
	n.add(root)
	return n
}

// drain reads fsnotify's channels until Close closes them, passing on what
// the loop has not taken yet only when nothing is pending already.
func (n *notifier) drain(events chan<- fsnotify.Event, errs chan<- error) {
	defer close(n.drained)
	defer close(events)
	defer close(errs)
	in, inErr := n.fsw.Events, n.fsw.Errors
	for in != nil || inErr != nil {
		select {
		case ev, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			select {
			case events <- ev:
			default:
			}
		case err, ok := <-inErr:
			if !ok {
				inErr = nil
				continue
			}
			select {
			case errs <- err:
			default:
			}
		}
	}
}

func (n *notifier) add(dir string) {
	if err := n.fsw.Add(dir); err != nil {
		// The periodic rescan still sees this folder.
		n.log.Debug("repository watch", zap.String("dir", dir), zap.Error(err))
		return
	}
	n.watched[dir] = true
}

// sync watches exactly the folders of snap: new folders are added, folders
// gone are dropped.
func (n *notifier) sync(snap Snapshot) {
	if n.fsw == nil {
		return
	}
	want := map[string]bool{n.root: true}
	for _, m := range snap.Models {
		if errors.Is(m.Err, ErrOutsideRoot) {
			continue
		}
		want[m.Dir] = true
		for _, v := range m.Versions {
			if !errors.Is(v.Err, ErrOutsideRoot) {
				want[filepath.Join(m.Dir, strconv.FormatInt(v.Number, 10))] = true
			}
		}
	}
	for dir := range n.watched {
		if !want[dir] {
			// The kernel drops watches of deleted folders by itself, so
			// an error here is expected and harmless.
			_ = n.fsw.Remove(dir)
			delete(n.watched, dir)
		}
	}
	for dir := range want {
		if !n.watched[dir] {
			n.add(dir)
		}
	}
}

func (n *notifier) close() {
	if n.fsw != nil {
		// Close waits for fsnotify's reading goroutine to end, which
		// closes the channels drain reads.
		if err := n.fsw.Close(); err != nil {
			n.log.Debug("repository watch close", zap.Error(err))
		}
		<-n.drained
	}
}
