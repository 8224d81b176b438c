package repository

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// WriteTraffic persists a model's traffic block into its config.yaml so a
// restart keeps a split changed at run time. The rest of the file, comments
// included where yaml.v3 keeps them, is left as it was; the new file is
// checked with ParseConfig before it atomically replaces the old one.
func WriteTraffic(root, name string, t Traffic) error {
	if err := ValidModelName(name); err != nil {
		return err
	}
	r, err := openRoot(root)
	if err != nil {
		return err
	}
	dir, err := r.resolve(filepath.Join(r.abs, name))
	if err != nil {
		return err
	}
	path := filepath.Join(dir, ConfigFileName)
	old, err := readConfigFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", name, err)
	}
	data, err := withTraffic(old, t)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", name, ConfigFileName, err)
	}
	if _, err := ParseConfig(data); err != nil {
		return fmt.Errorf("%s/%s: the updated file would not parse: %w", name, ConfigFileName, err)
	}
	return writeAtomic(path, data)
}

// withTraffic returns the config document data with its top-level traffic
// key replaced (or added).
func withTraffic(data []byte, t Traffic) ([]byte, error) {
	var doc yaml.Node
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, err
		}
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("the file is not a YAML mapping")
	}
	var value yaml.Node
	if err := value.Encode(t); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	replaced := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "traffic" {
			value.HeadComment = root.Content[i+1].HeadComment
			root.Content[i+1] = &value
			replaced = true
		}
	}
	if !replaced {
		root.Content = append(root.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "traffic", HeadComment: "A/B split, set at run time by PUT /v2/models/{model}/traffic."},
			&value)
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// writeAtomic replaces path with data through a synced temporary file and a
// rename, so readers see the old file or the new one, never a mix.
func writeAtomic(path string, data []byte) error {
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+ConfigFileName+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
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
	return os.Rename(tmp, path)
}
