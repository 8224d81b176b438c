package payloadlog

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/zap"
)

// FileConfig configures the file sink.
type FileConfig struct {
	// Dir holds the log files; it is created (0700) when missing.
	Dir string
	// MaxBytes rotates the current file before a line would take it past
	// this size. [DefaultMaxBytes]
	MaxBytes int64
	// MaxAge rotates the current file once it is this old. [DefaultMaxAge]
	MaxAge time.Duration
	// Retention deletes rotated files last written longer ago than this;
	// 0 keeps them all.
	Retention time.Duration
	// Now is the clock; nil is time.Now. Tests set it.
	Now func() time.Time
}

// Defaults of FileConfig.
const (
	DefaultMaxBytes = 100 << 20
	DefaultMaxAge   = time.Hour
)

// File names: the current file is filePrefix + its start time +
// fileSuffix; a rotated one has gzSuffix added. Names sort by start time.
const (
	filePrefix = "payload-"
	fileSuffix = ".jsonl"
	gzSuffix   = ".gz"
	timeLayout = "20060102T150405.000000000Z"
)

// FileSink writes each event as one line of JSON (the CloudEvent in
// structured form: its attributes and, under data, the v2 JSON body) to
// rotating files. Rotation, by size and by age, gzips the finished file;
// files are created 0600, as they hold what clients sent. Each line is
// written with one write call, so a crash leaves at most one cut line at
// the end of the current file, which export skips with a warning. It is
// safe for concurrent use.
//
// Rotation is written here rather than taken from a rotating-writer
// library: the well-kept one (lumberjack) counts size in whole megabytes,
// rotates by size only and names files by end time, while the flags speak
// bytes and age and export reads files in start-time order.
type FileSink struct {
	cfg FileConfig
	log *zap.Logger

	mu      sync.Mutex
	f       *os.File
	name    string
	size    int64
	started time.Time // when the current file opened, for MaxAge
	stamp   time.Time // the time its name carries

	stop chan struct{}
	done chan struct{}
}

// NewFileSink opens a new current file in cfg.Dir, gzips files a previous
// process left uncompressed (a crash), and starts the age check. An
// unwritable directory is an error here, at startup.
func NewFileSink(cfg FileConfig, log *zap.Logger) (*FileSink, error) {
	if cfg.Dir == "" {
		return nil, errors.New("no directory")
	}
	if cfg.MaxBytes < 0 || cfg.MaxAge < 0 || cfg.Retention < 0 {
		return nil, errors.New("max bytes, max age and retention must be >= 0")
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	s := &FileSink{cfg: cfg, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	leftovers, err := s.files(fileSuffix)
	if err != nil {
		return nil, err
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	for _, name := range leftovers {
		if err := compress(filepath.Join(cfg.Dir, name)); err != nil {
			log.Warn("payload log file left uncompressed", zap.String("file", name), zap.Error(err))
		}
	}
	go s.ageLoop()
	return s, nil
}

// files lists the directory's payload log files ending in suffix, sorted.
func (s *FileSink) files(suffix string) ([]string, error) {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); !e.IsDir() && strings.HasPrefix(n, filePrefix) && strings.HasSuffix(n, suffix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// open starts a new current file. Caller holds mu, or is the constructor.
func (s *FileSink) open() error {
	now := s.cfg.Now().UTC()
	stamp := now
	if !stamp.After(s.stamp) && !s.stamp.IsZero() {
		// Names must grow: a coarse or stepped-back clock names the file
		// the nanosecond after the previous one.
		stamp = s.stamp.Add(time.Nanosecond)
	}
	name := filePrefix + stamp.Format(timeLayout) + fileSuffix
	f, err := os.OpenFile(filepath.Join(s.cfg.Dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	s.f, s.name, s.size, s.started, s.stamp = f, name, 0, now, stamp
	return nil
}

// Write appends ev as one line, rotating first when the line would pass
// MaxBytes or the file is older than MaxAge.
func (s *FileSink) Write(_ context.Context, ev *event.Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return os.ErrClosed
	}
	if s.size > 0 && (s.size+int64(len(line)) > s.cfg.MaxBytes || s.cfg.Now().Sub(s.started) >= s.cfg.MaxAge) {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(line)
	s.size += int64(n)
	return err
}

// Rotate finishes the current file (gzipped) and starts a new one, if the
// current one holds anything.
func (s *FileSink) Rotate() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil || s.size == 0 {
		return nil
	}
	return s.rotate()
}

// rotate: caller holds mu. The new file opens first, so a failure leaves
// a file to write to.
func (s *FileSink) rotate() error {
	old, oldName := s.f, s.name
	if err := s.open(); err != nil {
		return err
	}
	if err := old.Close(); err != nil {
		s.log.Warn("closing payload log file", zap.String("file", oldName), zap.Error(err))
	}
	if err := compress(filepath.Join(s.cfg.Dir, oldName)); err != nil {
		s.log.Warn("payload log file left uncompressed", zap.String("file", oldName), zap.Error(err))
	}
	s.prune()
	return nil
}

// prune deletes rotated files older than Retention.
func (s *FileSink) prune() {
	if s.cfg.Retention == 0 {
		return
	}
	names, err := s.files(fileSuffix + gzSuffix)
	if err != nil {
		s.log.Warn("listing payload log files", zap.Error(err))
		return
	}
	cut := s.cfg.Now().Add(-s.cfg.Retention)
	for _, n := range names {
		path := filepath.Join(s.cfg.Dir, n)
		st, err := os.Stat(path)
		if err != nil || !st.ModTime().Before(cut) {
			continue
		}
		if err := os.Remove(path); err != nil {
			s.log.Warn("removing an expired payload log file", zap.String("file", n), zap.Error(err))
		}
	}
}

// ageLoop rotates a quiet current file once it passes MaxAge, so a file
// is finished (and compressed) on time even when no event comes.
func (s *FileSink) ageLoop() {
	defer close(s.done)
	every := min(max(s.cfg.MaxAge/10, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			if s.f != nil && s.size > 0 && s.cfg.Now().Sub(s.started) >= s.cfg.MaxAge {
				if err := s.rotate(); err != nil {
					s.log.Warn("rotating the payload log file", zap.Error(err))
				}
			}
			s.mu.Unlock()
		}
	}
}

// Close stops the age check, syncs and closes the current file. It stays
// uncompressed, readable as it is; the next start compresses it.
func (s *FileSink) Close() error {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if s.size == 0 {
		// Nothing was written: leave no empty file behind.
		_ = os.Remove(filepath.Join(s.cfg.Dir, s.name))
	}
	return err
}

// compress gzips path into path.gz (through a temporary file, so a crash
// never leaves a cut archive under the final name) and removes path.
func compress(path string) (err error) {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := path + gzSuffix + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = out.Close()
			_ = os.Remove(tmp)
		}
	}()
	zw := gzip.NewWriter(out)
	zw.Name = filepath.Base(path)
	if _, err := io.Copy(zw, in); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path+gzSuffix); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	return os.Remove(path)
}
