package payloadlog

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/zap"
)

// fakeClock is a settable clock for the file sink.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func testEvent(id string) *event.Event {
	ev := event.New()
	ev.SetID(id)
	ev.SetType(TypeRequest)
	ev.SetSource("test")
	ev.SetExtension(AttrInferenceService, "m")
	_ = ev.SetData(ContentType, []byte(`{"id":"`+id+`","inputs":[]}`))
	return &ev
}

// readLines reads every line of a plain or gzipped log file.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, gzSuffix) {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r = zr
	}
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

func listDir(t *testing.T, dir string) (plain, gz []string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		switch n := e.Name(); {
		case strings.HasSuffix(n, fileSuffix):
			plain = append(plain, n)
		case strings.HasSuffix(n, fileSuffix+gzSuffix):
			gz = append(gz, n)
		default:
			t.Errorf("unexpected file %s", n)
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), perm)
		}
	}
	return plain, gz
}

// TestFileRotation: by size (a line that would pass MaxBytes starts a new
// file), by age (on write and on the quiet file), gzip on rotation, files
// 0600, retention deleting old archives; every line survives in order.
func TestFileRotation(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{now: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)}
	line, _ := json.Marshal(testEvent("id-00"))
	per := int64(len(line) + 1)
	s, err := NewFileSink(FileConfig{Dir: dir, MaxBytes: 3 * per, MaxAge: time.Hour, Now: clock.Now}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	write := func(ids ...string) {
		for _, id := range ids {
			if err := s.Write(ctx, testEvent(id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("size", func(t *testing.T) {
		write("id-00", "id-01", "id-02", "id-03", "id-04", "id-05", "id-06")
		plain, gz := listDir(t, dir)
		if len(gz) != 2 || len(plain) != 1 {
			t.Fatalf("files %v %v, want 2 archives of 3 lines and a current file", gz, plain)
		}
		for _, g := range gz {
			if n := len(readLines(t, filepath.Join(dir, g))); n != 3 {
				t.Errorf("%s holds %d lines, want 3", g, n)
			}
		}
	})
	t.Run("age on write", func(t *testing.T) {
		clock.advance(time.Hour)
		write("id-07")
		plain, gz := listDir(t, dir)
		if len(gz) != 3 || len(plain) != 1 || len(readLines(t, filepath.Join(dir, plain[0]))) != 1 {
			t.Fatalf("files %v %v, want the old file rotated before the write", gz, plain)
		}
	})
	t.Run("age of a quiet file", func(t *testing.T) {
		clock.advance(time.Hour)
		// The age check ticks at MaxAge/10 capped to a minute; Rotate is
		// what it calls, so a test need not wait for it.
		if err := s.Rotate(); err != nil {
			t.Fatal(err)
		}
		plain, gz := listDir(t, dir)
		if len(gz) != 4 || len(plain) != 1 {
			t.Fatalf("files %v %v, want 4 archives and an empty current file", gz, plain)
		}
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var all []string
	_, gz := listDir(t, dir)
	for _, g := range gz {
		for _, l := range readLines(t, filepath.Join(dir, g)) {
			var ev struct{ ID string }
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			all = append(all, ev.ID)
		}
	}
	if got := strings.Join(all, ","); got != "id-00,id-01,id-02,id-03,id-04,id-05,id-06,id-07" {
		t.Errorf("lines in file order: %s", got)
	}

	t.Run("retention", func(t *testing.T) {
		old := time.Now().Add(-48 * time.Hour)
		for _, g := range gz[:2] {
			if err := os.Chtimes(filepath.Join(dir, g), old, old); err != nil {
				t.Fatal(err)
			}
		}
		s, err := NewFileSink(FileConfig{Dir: dir, MaxBytes: per, Retention: 24 * time.Hour}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		write := func(id string) {
			if err := s.Write(ctx, testEvent(id)); err != nil {
				t.Fatal(err)
			}
		}
		write("id-08")
		write("id-09") // rotates, then prunes
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_, after := listDir(t, dir)
		for _, g := range gz[:2] {
			for _, a := range after {
				if a == g {
					t.Errorf("%s outlived the retention", g)
				}
			}
		}
		if len(after) != len(gz)-2+1 {
			t.Errorf("archives %v, want the %d recent ones and the new one", after, len(gz)-2)
		}
	})
}

// TestFileSinkRecoversAfterCrash: a current file a crashed process left
// behind is compressed on the next start, cut line and all.
func TestFileSinkRecoversAfterCrash(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, filePrefix+"20261204T000000.000000000Z"+fileSuffix)
	if err := os.WriteFile(left, []byte("{\"id\":\"a\"}\n{\"id\":"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewFileSink(FileConfig{Dir: dir}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	plain, gz := listDir(t, dir)
	if len(plain) != 0 || len(gz) != 1 || gz[0] != filepath.Base(left)+gzSuffix {
		t.Fatalf("files %v %v, want the leftover compressed and no empty current file", plain, gz)
	}
}

// TestFileSinkBadDir: a directory that cannot be made or written is an
// error at startup.
func TestFileSinkBadDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "sub"), ""} {
		if _, err := NewFileSink(FileConfig{Dir: dir}, zap.NewNop()); err == nil {
			t.Errorf("directory %q accepted", dir)
		}
	}
}
