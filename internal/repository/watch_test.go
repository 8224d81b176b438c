package repository

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

const (
	// defaultTestTimeout bounds every wait for something that must happen.
	defaultTestTimeout = 10 * time.Second
	// testSettle is the settle interval of Run tests: short, to keep them
	// fast.
	testSettle = 100 * time.Millisecond
	// halfWriteSettle is the window in which TestWatcherHalfWrittenFile
	// must finish its second write; generous, so a busy machine cannot
	// make the test report a false failure.
	halfWriteSettle = 500 * time.Millisecond
)

// stabilizer tests drive the stability logic with explicit scans, so the
// order of events is exact; the spacing of real checks is Run's job.

func scanNext(t *testing.T, s *stabilizer, root string) (Snapshot, bool, bool) {
	t.Helper()
	snap, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	return s.next(snap)
}

// publishedStable feeds scans until a snapshot is published and nothing is
// unstable, as the start of Run does.
func publishedStable(t *testing.T, s *stabilizer, root string) Snapshot {
	t.Helper()
	if _, _, publish := scanNext(t, s, root); publish {
		t.Fatal("first scan published: nothing is known to be complete yet")
	}
	out, unstable, publish := scanNext(t, s, root)
	if !publish || unstable {
		t.Fatalf("second scan of an unchanged repository: publish=%v unstable=%v", publish, unstable)
	}
	return out
}

func TestStabilizerNewVersionInTwoSteps(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "m", ConfigFileName), "version_policy: {all: true}\n")
	writeFile(t, filepath.Join(root, "m", "1", ModelFileName), modelBytes)
	var s stabilizer
	first := publishedStable(t, &s, root)
	if got := mustModel(t, first, "m").Selected; !slices.Equal(got, []int64{1}) {
		t.Fatalf("initial selected = %v", got)
	}

	path := filepath.Join(root, "m", "2", ModelFileName)
	writeFile(t, path, modelBytes[:5])
	out, unstable, publish := scanNext(t, &s, root)
	if !unstable || publish {
		t.Fatalf("half-written file seen for the first time: unstable=%v publish=%v", unstable, publish)
	}
	if _, ok := findVersion(mustModel(t, out, "m"), 2); ok {
		t.Fatal("half-written version 2 in the snapshot")
	}

	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(modelBytes[5:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, unstable, publish = scanNext(t, &s, root)
	if !unstable || publish {
		t.Fatalf("file changed since the last check: unstable=%v publish=%v", unstable, publish)
	}
	if _, ok := findVersion(mustModel(t, out, "m"), 2); ok {
		t.Fatal("version 2 reported while still changing")
	}

	out, unstable, publish = scanNext(t, &s, root)
	if unstable || !publish {
		t.Fatalf("file unchanged across two checks: unstable=%v publish=%v", unstable, publish)
	}
	m := mustModel(t, out, "m")
	if v := mustVersion(t, m, 2); v.Fingerprint.Size != int64(len(modelBytes)) {
		t.Fatalf("version 2 size = %d, want %d", v.Fingerprint.Size, len(modelBytes))
	}
	if !slices.Equal(m.Selected, []int64{1, 2}) {
		t.Fatalf("selected = %v, want [1 2]", m.Selected)
	}

	if _, unstable, publish := scanNext(t, &s, root); unstable || publish {
		t.Fatalf("nothing changed: unstable=%v publish=%v", unstable, publish)
	}
}

func TestStabilizerRewriteKeepsServedVersion(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "m", "1", ModelFileName)
	writeFile(t, path, modelBytes)
	var s stabilizer
	first := publishedStable(t, &s, root)
	old := mustVersion(t, mustModel(t, first, "m"), 1)

	writeFile(t, path, modelBytes+"-new")
	out, unstable, publish := scanNext(t, &s, root)
	if !unstable || publish {
		t.Fatalf("rewritten file: unstable=%v publish=%v", unstable, publish)
	}
	m := mustModel(t, out, "m")
	if v := mustVersion(t, m, 1); !v.Fingerprint.Equal(old.Fingerprint) {
		t.Fatal("a version being rewritten lost its last stable state")
	}
	if !slices.Equal(m.Selected, []int64{1}) {
		t.Fatalf("selected = %v, want [1] while rewriting", m.Selected)
	}

	out, unstable, publish = scanNext(t, &s, root)
	if unstable || !publish {
		t.Fatalf("rewrite settled: unstable=%v publish=%v", unstable, publish)
	}
	if v := mustVersion(t, mustModel(t, out, "m"), 1); v.Fingerprint.Size != int64(len(modelBytes)+4) {
		t.Fatalf("size = %d after the rewrite settled", v.Fingerprint.Size)
	}
}

func TestStabilizerConfigChange(t *testing.T) {
	root := t.TempDir()
	cfgPath := filepath.Join(root, "m", ConfigFileName)
	writeFile(t, filepath.Join(root, "m", "1", ModelFileName), modelBytes)
	writeFile(t, filepath.Join(root, "m", "2", ModelFileName), modelBytes)
	var s stabilizer
	first := publishedStable(t, &s, root)
	if got := mustModel(t, first, "m").Selected; !slices.Equal(got, []int64{2}) {
		t.Fatalf("initial selected = %v", got)
	}

	// A config caught half written is invalid: the model keeps its state.
	writeFile(t, cfgPath, "version_policy: {lat")
	out, unstable, publish := scanNext(t, &s, root)
	if !unstable || publish {
		t.Fatalf("changing config: unstable=%v publish=%v", unstable, publish)
	}
	if m := mustModel(t, out, "m"); m.Err != nil || !slices.Equal(m.Selected, []int64{2}) {
		t.Fatalf("model while its config changes = %+v", m)
	}

	writeFile(t, cfgPath, "version_policy: {latest: 2}\n")
	if _, unstable, publish := scanNext(t, &s, root); !unstable || publish {
		t.Fatalf("config changed again: unstable=%v publish=%v", unstable, publish)
	}
	out, unstable, publish = scanNext(t, &s, root)
	if unstable || !publish {
		t.Fatalf("config settled: unstable=%v publish=%v", unstable, publish)
	}
	if m := mustModel(t, out, "m"); !slices.Equal(m.Selected, []int64{1, 2}) {
		t.Fatalf("selected = %v, want [1 2] after latest: 2", m.Selected)
	}

	// A config that stays broken is reported, not held back forever.
	writeFile(t, cfgPath, "version_policy: {latest: 0}\n")
	scanNext(t, &s, root)
	out, _, publish = scanNext(t, &s, root)
	if m := mustModel(t, out, "m"); !publish || m.Err == nil || len(m.Selected) != 0 {
		t.Fatalf("broken config settled: publish=%v model=%+v", publish, m)
	}
}

func TestStabilizerNewModelAndRemoval(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "m", "1", ModelFileName), modelBytes)
	writeFile(t, filepath.Join(root, "m", "2", ModelFileName), modelBytes)
	var s stabilizer
	publishedStable(t, &s, root)

	writeFile(t, filepath.Join(root, "n", "1", ModelFileName), modelBytes)
	out, unstable, publish := scanNext(t, &s, root)
	if !unstable || publish {
		t.Fatalf("new model: unstable=%v publish=%v", unstable, publish)
	}
	if _, ok := out.Model("n"); ok {
		t.Fatal("a model seen once is in the snapshot")
	}
	if out, _, publish = scanNext(t, &s, root); !publish {
		t.Fatal("settled new model not published")
	}
	if got := modelNames(out); !slices.Equal(got, []string{"m", "n"}) {
		t.Fatalf("models = %v", got)
	}

	// Removal needs no settling.
	if err := os.RemoveAll(filepath.Join(root, "m", "2")); err != nil {
		t.Fatal(err)
	}
	out, _, publish = scanNext(t, &s, root)
	if m := mustModel(t, out, "m"); !publish || !slices.Equal(versionNumbers(m.Versions), []int64{1}) || !slices.Equal(m.Selected, []int64{1}) {
		t.Fatalf("after removing version 2: publish=%v model=%+v", publish, m)
	}
	if err := os.RemoveAll(filepath.Join(root, "n")); err != nil {
		t.Fatal(err)
	}
	out, _, publish = scanNext(t, &s, root)
	if got := modelNames(out); !publish || !slices.Equal(got, []string{"m"}) {
		t.Fatalf("after removing model n: publish=%v models=%v", publish, got)
	}
}

func TestNewWatcherErrors(t *testing.T) {
	root := t.TempDir()
	if _, err := NewWatcher(root, 0, nil); err == nil {
		t.Error("interval 0 accepted")
	}
	if _, err := NewWatcher(root, time.Second, nil, WithSettle(0)); err == nil {
		t.Error("settle 0 accepted")
	}
	if _, err := NewWatcher(filepath.Join(root, "absent"), time.Second, nil); err == nil {
		t.Error("missing root accepted")
	}
	if _, err := NewWatcher(root, time.Second, nil); err != nil {
		t.Errorf("NewWatcher: %v", err)
	}
}

// runWatcher runs w until the test ends and returns the snapshots it
// publishes. The cleanup cancels Run and waits for it to return.
func runWatcher(t *testing.T, w *Watcher) <-chan Snapshot {
	t.Helper()
	snaps := make(chan Snapshot, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, func(s Snapshot) {
			select {
			case snaps <- s:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(defaultTestTimeout):
			t.Error("Run did not return after cancel")
		}
	})
	return snaps
}

// waitSnapshot returns the first snapshot for which ok holds, failing the
// test after defaultTestTimeout.
func waitSnapshot(t *testing.T, snaps <-chan Snapshot, what string, ok func(Snapshot) bool) Snapshot {
	t.Helper()
	timeout := time.After(defaultTestTimeout)
	for {
		select {
		case s := <-snaps:
			if ok(s) {
				return s
			}
		case <-timeout:
			t.Fatalf("no snapshot with %s within %s", what, defaultTestTimeout)
		}
	}
}

func hasVersion(s Snapshot, model string, n int64) bool {
	m, ok := s.Model(model)
	if !ok {
		return false
	}
	_, ok = findVersion(m, n)
	return ok
}

func TestWatcherRun(t *testing.T) {
	for _, pollOnly := range []bool{false, true} {
		name := "notifications"
		interval := time.Hour // notifications alone must drive every check
		if pollOnly {
			name, interval = "rescan only", 50*time.Millisecond
		}
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeFile(t, filepath.Join(root, "m", "1", ModelFileName), modelBytes)
			w, err := NewWatcher(root, interval, zaptest.NewLogger(t), WithSettle(testSettle))
			if err != nil {
				t.Fatal(err)
			}
			w.pollOnly = pollOnly
			snaps := runWatcher(t, w)

			first := waitSnapshot(t, snaps, "the initial model", func(s Snapshot) bool { return hasVersion(s, "m", 1) })
			if got := mustModel(t, first, "m").Selected; !slices.Equal(got, []int64{1}) {
				t.Fatalf("initial selected = %v", got)
			}

			writeFile(t, filepath.Join(root, "m", "2", ModelFileName), modelBytes)
			s := waitSnapshot(t, snaps, "new version 2", func(s Snapshot) bool { return hasVersion(s, "m", 2) })
			if got := mustModel(t, s, "m").Selected; !slices.Equal(got, []int64{2}) {
				t.Fatalf("selected after version 2 = %v, want [2]", got)
			}

			writeFile(t, filepath.Join(root, "m", ConfigFileName), "version_policy: {all: true}\n")
			waitSnapshot(t, snaps, "the config change", func(s Snapshot) bool {
				m, ok := s.Model("m")
				return ok && slices.Equal(m.Selected, []int64{1, 2})
			})

			if err := os.RemoveAll(filepath.Join(root, "m", "1")); err != nil {
				t.Fatal(err)
			}
			waitSnapshot(t, snaps, "version 1 removed", func(s Snapshot) bool { return !hasVersion(s, "m", 1) && hasVersion(s, "m", 2) })

			writeFile(t, filepath.Join(root, "n", "1", ModelFileName), modelBytes)
			waitSnapshot(t, snaps, "new model n", func(s Snapshot) bool { return hasVersion(s, "n", 1) })

			if err := os.RemoveAll(filepath.Join(root, "m")); err != nil {
				t.Fatal(err)
			}
			waitSnapshot(t, snaps, "model m removed", func(s Snapshot) bool {
				_, ok := s.Model("m")
				return !ok && hasVersion(s, "n", 1)
			})
		})
	}
}

// TestWatcherHalfWrittenFile writes a model file in two steps, the second
// right after a check has seen the first, and requires that no snapshot ever
// shows the half-written file.
func TestWatcherHalfWrittenFile(t *testing.T) {
	root := t.TempDir()
	mkdir(t, filepath.Join(root, "m"))
	w, err := NewWatcher(root, time.Hour, zaptest.NewLogger(t), WithSettle(halfWriteSettle))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "m", "1", ModelFileName)
	half := int64(5)
	sawHalf := make(chan struct{})
	w.afterScan = func(s Snapshot) {
		m, ok := s.Model("m")
		if !ok {
			return
		}
		if v, ok := findVersion(m, 1); ok && v.Fingerprint.Size == half && sawHalf != nil {
			close(sawHalf)
			sawHalf = nil
		}
	}
	halfSeen := sawHalf
	snaps := runWatcher(t, w)
	waitSnapshot(t, snaps, "the initial empty model", func(s Snapshot) bool { _, ok := s.Model("m"); return ok })

	writeFile(t, path, modelBytes[:half])
	select {
	case <-halfSeen:
	case <-time.After(defaultTestTimeout):
		t.Fatal("no check saw the half-written file")
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(modelBytes[half:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	timeout := time.After(defaultTestTimeout)
	for {
		select {
		case s := <-snaps:
			m := mustModel(t, s, "m")
			v, ok := findVersion(m, 1)
			if !ok {
				continue
			}
			if v.Fingerprint.Size != int64(len(modelBytes)) {
				t.Fatalf("snapshot reported version 1 with %d bytes, want %d", v.Fingerprint.Size, len(modelBytes))
			}
			return
		case <-timeout:
			t.Fatal("complete file never reported")
		}
	}
}

// TestStabilizerKeepsPublishedStartup: with the startup scan given as
// published (WithPublished), a config.yaml rewritten before the Watcher's
// first two checks keeps the model as it was instead of leaving it out of
// the first snapshot, which would unload it.
func TestStabilizerKeepsPublishedStartup(t *testing.T) {
	root := t.TempDir()
	cfgPath := filepath.Join(root, "m", ConfigFileName)
	writeFile(t, cfgPath, "version_policy: {all: true}\n")
	writeFile(t, filepath.Join(root, "m", "1", ModelFileName), modelBytes)
	startup, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(root, time.Hour, nil, WithPublished(startup))
	if err != nil {
		t.Fatal(err)
	}
	s := stabilizer{last: w.published}
	scanNext(t, &s, root)
	writeFile(t, cfgPath, "version_policy: {all: true}\ntraffic: {split: {\"1\": 1}}\n")
	out, unstable, _ := scanNext(t, &s, root)
	if !unstable {
		t.Fatal("a config rewritten between two checks is not unstable")
	}
	if _, ok := out.Model("m"); !ok {
		t.Fatal("the model left the snapshot while its config changed")
	}

	var bare stabilizer // without WithPublished: the model would be left out
	scanNext(t, &bare, root)
	writeFile(t, cfgPath, "version_policy: {all: true}\n")
	if out, _, _ := scanNext(t, &bare, root); len(out.Models) != 0 {
		t.Fatalf("without a published snapshot the changing model was kept: %+v", out.Models)
	}
}

// TestWatcherSurvivesMovedFolders renames and deletes watched version
// folders while the watcher syncs its watches. fsnotify reports a moved
// watched folder while holding the lock its Remove takes, so a watcher
// that read fsnotify's channels on the goroutine that also calls Remove
// could deadlock there (seen in the chaos soak); afterwards it must still
// publish changes and stop when asked (runWatcher's cleanup checks that).
func TestWatcherSurvivesMovedFolders(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "m", ConfigFileName), "version_policy: {all: true}\n")
	writeFile(t, filepath.Join(root, "m", "1", ModelFileName), modelBytes)
	w, err := NewWatcher(root, 20*time.Millisecond, zaptest.NewLogger(t), WithSettle(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	snaps := runWatcher(t, w)
	waitSnapshot(t, snaps, "version 1", func(s Snapshot) bool { return hasVersion(s, "m", 1) })
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		dir := filepath.Join(root, "m", "2")
		writeFile(t, filepath.Join(dir, ModelFileName), modelBytes)
		time.Sleep(time.Duration(i%5) * time.Millisecond) // sometimes long enough for a watch
		moved := filepath.Join(root, "moved")
		if err := os.Rename(dir, moved); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(moved); err != nil {
			t.Fatal(err)
		}
		for len(snaps) > 0 { // onChange must not block the watcher meanwhile
			<-snaps
		}
	}
	writeFile(t, filepath.Join(root, "m", "3", ModelFileName), modelBytes)
	waitSnapshot(t, snaps, "version 3 after the churn", func(s Snapshot) bool { return hasVersion(s, "m", 3) })
}
