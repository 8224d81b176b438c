package repository

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// File names inside the repository.
const (
	// ConfigFileName is a model's optional configuration, in its folder.
	ConfigFileName = "config.yaml"
	// ModelFileName is the ONNX model, in each version folder.
	ModelFileName = "model.onnx"
)

// Errors of the repository layout, wrapped with the path they are about.
var (
	// ErrInvalidModelName says a folder or requested name cannot be a model
	// name (see ValidModelName).
	ErrInvalidModelName = errors.New("invalid model name")
	// ErrModelNotFound says the repository has no folder for a model.
	ErrModelNotFound = errors.New("model not found in repository")
	// ErrOutsideRoot says a path resolves, through symbolic links, to a
	// place outside the repository root; it is never read.
	ErrOutsideRoot = errors.New("path resolves outside the model repository")
	// ErrNoModelFile says a version folder has no usable model.onnx.
	ErrNoModelFile = errors.New("no usable " + ModelFileName)
)

// Snapshot is the state of the whole repository at one moment. A Snapshot
// handed out by this package is never modified afterwards, so it is safe for
// concurrent reads; receivers must not modify it either (Clone a Config to
// change it).
type Snapshot struct {
	// Root is the absolute repository path.
	Root string
	// Models are the model folders with valid names, by name.
	Models []Model
	// Problems lists folders at the top level that cannot be models (an
	// invalid name, a broken symbolic link), so they are reported rather
	// than silently invisible.
	Problems []error
}

// Model returns the model called name.
func (s Snapshot) Model(name string) (Model, bool) {
	for _, m := range s.Models {
		if m.Name == name {
			return m, true
		}
	}
	return Model{}, false
}

// Model is one model folder. A broken model (Err set) does not affect the
// others in a Snapshot. Like Snapshot, it is read-only once handed out and
// safe for concurrent reads.
type Model struct {
	// Name is the folder name.
	Name string
	// Dir is the absolute folder path.
	Dir string
	// Config is the parsed config.yaml (defaults when the file is absent);
	// meaningful only when Err is nil.
	Config Config
	// ConfigHash is the SHA-256 of config.yaml's bytes (of no bytes when the
	// file is absent), so a caller can tell a changed config from the same.
	ConfigHash [sha256.Size]byte
	// Err says why the model cannot be served as a whole: config.yaml is
	// invalid (wraps ErrInvalidConfig) or unreadable, or the folder resolves
	// outside the repository. Versions are still listed.
	Err error
	// Versions are all version folders found, ascending by Number, each
	// with its own Err.
	Versions []Version
	// Selected are the version numbers the policy serves among the Versions
	// without Err, ascending; empty when Err is set.
	Selected []int64
	// Problems lists folders inside the model folder that look like
	// versions but are not (such as "0" or "01"): they are ignored.
	Problems []error
}

// Version is one numbered version folder of a model; read-only once handed
// out and safe for concurrent reads.
type Version struct {
	// Number is the folder name as a number (>= 1).
	Number int64
	// Path is the model file's absolute path with symbolic links resolved,
	// checked to lie inside the repository; empty when Err is set.
	Path string
	// Fingerprint identifies the file's content and the model's config.
	Fingerprint Fingerprint
	// Err says why this version cannot load: no model.onnx (ErrNoModelFile),
	// a link out of the repository (ErrOutsideRoot), an unreadable file.
	Err error
}

// Fingerprint tells "changed" from "same" for a version without reading
// its file: a version must be reloaded when its model file or its model's
// config changed. Compare with Equal. A plain value, safe for concurrent
// reads.
type Fingerprint struct {
	// Size is the model file's size in bytes.
	Size int64
	// ModTime is the model file's modification time.
	ModTime time.Time
	// ConfigHash is the owning Model's ConfigHash.
	ConfigHash [sha256.Size]byte
}

// Equal reports whether f and o describe the same file and config.
func (f Fingerprint) Equal(o Fingerprint) bool {
	return f.Size == o.Size && f.ModTime.Equal(o.ModTime) && f.ConfigHash == o.ConfigHash
}

// ValidModelName reports, wrapping ErrInvalidModelName, why name cannot be a
// model name: it is the folder name and appears in URLs, metric labels and
// logs, so it must be a single safe path element: not empty, at most 255
// bytes, not "." or "..", not hidden (leading "."), valid UTF-8 without
// control characters or path separators.
func ValidModelName(name string) error {
	var why string
	switch {
	case name == "":
		why = "empty"
	case len(name) > 255:
		why = "longer than 255 bytes"
	case name == "." || name == "..":
		why = "not a folder name"
	case name[0] == '.':
		why = "starts with '.' (hidden folders are not models)"
	case !utf8.ValidString(name):
		why = "not valid UTF-8"
	case strings.ContainsAny(name, `/\`):
		why = "contains a path separator"
	case strings.ContainsFunc(name, unicode.IsControl):
		why = "contains a control character"
	default:
		return nil
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidModelName, name, why)
}

// Scan reads the repository at root: every non-hidden folder is a model,
// every folder in it named by a version number holds that version's
// model.onnx. Problems of one model or version are recorded on it; Scan
// fails only when root itself cannot be read. It does not check that files
// are complete: Watcher does, for a repository that changes.
func Scan(root string) (Snapshot, error) {
	r, err := openRoot(root)
	if err != nil {
		return Snapshot{}, err
	}
	entries, err := os.ReadDir(r.abs)
	if err != nil {
		return Snapshot{}, fmt.Errorf("read repository %s: %w", r.abs, err)
	}
	snap := Snapshot{Root: r.abs}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(r.abs, name)
		isDir, err := isDirEntry(path, e)
		if err != nil {
			snap.Problems = append(snap.Problems, err)
			continue
		}
		if !isDir {
			continue
		}
		if err := ValidModelName(name); err != nil {
			snap.Problems = append(snap.Problems, fmt.Errorf("%s: %w", path, err))
			continue
		}
		snap.Models = append(snap.Models, r.scanModel(name))
	}
	return snap, nil
}

// ScanModel reads one model of the repository at root, as Scan would. It
// fails with ErrInvalidModelName or ErrModelNotFound when name is not a
// model folder there.
func ScanModel(root, name string) (Model, error) {
	if err := ValidModelName(name); err != nil {
		return Model{}, err
	}
	r, err := openRoot(root)
	if err != nil {
		return Model{}, err
	}
	fi, err := os.Stat(filepath.Join(r.abs, name))
	if err != nil || !fi.IsDir() {
		return Model{}, fmt.Errorf("%q in %s: %w", name, r.abs, ErrModelNotFound)
	}
	return r.scanModel(name), nil
}

// repoRoot is a repository root as given (abs) and with symbolic links
// resolved (real), the reference for confinement checks.
type repoRoot struct {
	abs, real string
}

func openRoot(root string) (repoRoot, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return repoRoot{}, fmt.Errorf("repository root %s: %w", root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return repoRoot{}, fmt.Errorf("repository root %s: %w", abs, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return repoRoot{}, fmt.Errorf("repository root %s: %w", abs, err)
	}
	if !fi.IsDir() {
		return repoRoot{}, fmt.Errorf("repository root %s: not a folder", abs)
	}
	return repoRoot{abs: abs, real: real}, nil
}

// resolve returns path with symbolic links resolved, or ErrOutsideRoot when
// that lies outside the repository.
func (r repoRoot) resolve(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(r.real, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", fmt.Errorf("%s -> %s: %w", path, real, ErrOutsideRoot)
	}
	return real, nil
}

// isDirEntry reports whether a directory entry is a folder, following a
// symbolic link; a broken link is an error.
func isDirEntry(path string, e fs.DirEntry) (bool, error) {
	if e.IsDir() {
		return true, nil
	}
	if e.Type()&fs.ModeSymlink == 0 {
		return false, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("%s: broken symbolic link: %w", path, err)
	}
	return fi.IsDir(), nil
}

func (r repoRoot) scanModel(name string) Model {
	m := Model{Name: name, Dir: filepath.Join(r.abs, name)}
	realDir, err := r.resolve(m.Dir)
	if err != nil {
		m.Err = err
		return m
	}
	cfgPath := filepath.Join(m.Dir, ConfigFileName)
	data, err := r.readConfig(cfgPath)
	m.ConfigHash = sha256.Sum256(data)
	switch {
	case err == nil && data == nil:
		// No config.yaml: batching decided by the model's shapes, and a
		// hash apart from an empty file's, so adding one reloads.
		m.Config, m.ConfigHash = NoFileConfig(), noFileHash
	case err == nil:
		m.Config, err = ParseConfig(data)
	}
	if err != nil {
		m.Err = fmt.Errorf("%s: %w", cfgPath, err)
	}

	entries, err := os.ReadDir(realDir)
	if err != nil {
		if m.Err == nil {
			m.Err = fmt.Errorf("read model folder %s: %w", m.Dir, err)
		}
		return m
	}
	var ready []int64
	for _, e := range entries {
		vname := e.Name()
		path := filepath.Join(m.Dir, vname)
		n, ok := ParseVersion(vname)
		if !ok {
			if vname != "" && strings.Trim(vname, "0123456789") == "" {
				m.Problems = append(m.Problems, fmt.Errorf("%s: ignored: a version folder is named by a number >= 1 without leading zeros", path))
			}
			continue
		}
		isDir, err := isDirEntry(path, e)
		if err != nil {
			m.Versions = append(m.Versions, Version{Number: n, Err: err})
			continue
		}
		if !isDir {
			continue
		}
		v := r.scanVersion(path, n, m.ConfigHash)
		if v.Err == nil {
			ready = append(ready, n)
		}
		m.Versions = append(m.Versions, v)
	}
	// os.ReadDir sorts by name, which is not numeric order ("10" < "9").
	slices.SortFunc(m.Versions, func(a, b Version) int { return cmp.Compare(a.Number, b.Number) })
	if m.Err == nil {
		m.Selected = m.Config.VersionPolicy.Select(ready)
	}
	return m
}

// readConfig returns the bytes of a model's config.yaml: none when it is
// absent, an error when it resolves outside the repository or is no file.
// noFileHash is the ConfigHash of a model without config.yaml.
var noFileHash = sha256.Sum256([]byte("no " + ConfigFileName))

// readConfig returns the config file's text, nil (and no error) when
// there is none; an empty file gives empty, non-nil text.
func (r repoRoot) readConfig(path string) ([]byte, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	real, err := r.resolve(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return readConfigFile(real)
}

func (r repoRoot) scanVersion(dir string, n int64, configHash [sha256.Size]byte) Version {
	v := Version{Number: n}
	path := filepath.Join(dir, ModelFileName)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		v.Err = fmt.Errorf("%s: %w: file missing", path, ErrNoModelFile)
		return v
	}
	real, err := r.resolve(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%s: %w: broken symbolic link", path, ErrNoModelFile)
		}
		v.Err = err
		return v
	}
	fi, err := os.Stat(real)
	switch {
	case err != nil:
		v.Err = fmt.Errorf("%s: %w", path, err)
	case !fi.Mode().IsRegular():
		v.Err = fmt.Errorf("%s: %w: not a regular file", path, ErrNoModelFile)
	case fi.Size() == 0:
		v.Err = fmt.Errorf("%s: %w: empty file", path, ErrNoModelFile)
	default:
		v.Path = real
		v.Fingerprint = Fingerprint{Size: fi.Size(), ModTime: fi.ModTime(), ConfigHash: configHash}
	}
	return v
}
