package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// StateFileName is the file a FileStore keeps a model's rollout in.
const StateFileName = ".rollout.json"

// MaxStateBytes bounds a state file: the history holds at most 64
// decisions, so a real one stays far below it; a larger file is refused.
const MaxStateBytes = 1 << 20

// FileStore keeps each model's rollout as JSON in a file of its own,
// replaced crash-safely (a synced temporary file renamed over it). Safe for
// concurrent use by one process.
type FileStore struct {
	// Path returns the state file of a model.
	Path func(model string) string
}

// BesideConfig returns a FileStore keeping each model's rollout in the
// model's folder of the repository at root, beside its config.yaml (which
// holds the traffic split): root/<model>/.rollout.json.
func BesideConfig(root string) FileStore {
	return FileStore{Path: func(model string) string { return filepath.Join(root, model, StateFileName) }}
}

// InFolder returns a FileStore keeping every model's rollout in dir, as
// dir/<model>.rollout.json.
func InFolder(dir string) FileStore {
	return FileStore{Path: func(model string) string { return filepath.Join(dir, model+".rollout.json") }}
}

// Load implements Store.
func (s FileStore) Load(model string) (Status, bool, error) {
	f, err := os.Open(s.Path(model))
	if errors.Is(err, fs.ErrNotExist) {
		return Status{}, false, nil
	}
	if err != nil {
		return Status{}, false, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxStateBytes+1))
	if err != nil {
		return Status{}, false, err
	}
	if len(data) > MaxStateBytes {
		return Status{}, false, fmt.Errorf("%s: larger than %d bytes", s.Path(model), MaxStateBytes)
	}
	var st Status
	if err := json.Unmarshal(data, &st); err != nil {
		return Status{}, false, fmt.Errorf("%s: %w", s.Path(model), err)
	}
	if st.Model != model {
		return Status{}, false, fmt.Errorf("%s: holds the rollout of model %q", s.Path(model), st.Model)
	}
	if err := st.Policy.check(); err != nil {
		return Status{}, false, fmt.Errorf("%s: %w", s.Path(model), err)
	}
	if st.Phase == PhaseProgressing && (st.Step < 0 || st.Step >= len(st.Policy.Steps)) {
		return Status{}, false, fmt.Errorf("%s: step %d out of range", s.Path(model), st.Step)
	}
	return st, true, nil
}

// Save implements Store.
func (s FileStore) Save(st Status) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	path := s.Path(st.Model)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".rollout-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // the rename itself survives a crash
		d.Close()
	}
	return nil
}
