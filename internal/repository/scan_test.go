package repository

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// modelBytes stands in for an ONNX file: the repository never parses it.
const modelBytes = "onnx-model-bytes"

func versionNumbers(vs []Version) []int64 {
	var out []int64
	for _, v := range vs {
		out = append(out, v.Number)
	}
	return out
}

func modelNames(s Snapshot) []string {
	var out []string
	for _, m := range s.Models {
		out = append(out, m.Name)
	}
	return out
}

func mustModel(t *testing.T, s Snapshot, name string) Model {
	t.Helper()
	m, ok := s.Model(name)
	if !ok {
		t.Fatalf("snapshot has no model %q (models %v)", name, modelNames(s))
	}
	return m
}

func mustVersion(t *testing.T, m Model, n int64) Version {
	t.Helper()
	v, ok := findVersion(m, n)
	if !ok {
		t.Fatalf("model %s has no version %d (versions %v)", m.Name, n, versionNumbers(m.Versions))
	}
	return v
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	mkdir(t, filepath.Dir(link))
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestScanMixedFolders(t *testing.T) {
	root := t.TempDir()
	// a: config, versions 1, 2, 10, plus folders and files that are not versions.
	writeFile(t, filepath.Join(root, "a", ConfigFileName), "version_policy: {latest: 2}\n")
	for _, v := range []string{"1", "2", "10"} {
		writeFile(t, filepath.Join(root, "a", v, ModelFileName), modelBytes)
	}
	mkdir(t, filepath.Join(root, "a", "labels"))
	mkdir(t, filepath.Join(root, "a", "01"))
	mkdir(t, filepath.Join(root, "a", "0"))
	writeFile(t, filepath.Join(root, "a", "3"), "a file, not a folder")
	writeFile(t, filepath.Join(root, "a", "notes.txt"), "x")
	// b: no config.
	writeFile(t, filepath.Join(root, "b", "1", ModelFileName), modelBytes)
	// c: broken config, must not hide the other models.
	writeFile(t, filepath.Join(root, "c", ConfigFileName), "max_batch_size: lots\n")
	writeFile(t, filepath.Join(root, "c", "1", ModelFileName), modelBytes)
	// d: version folders without a usable model file.
	mkdir(t, filepath.Join(root, "d", "1"))
	writeFile(t, filepath.Join(root, "d", "2", ModelFileName), "")
	mkdir(t, filepath.Join(root, "d", "3", ModelFileName))
	writeFile(t, filepath.Join(root, "d", "4", ModelFileName), modelBytes)
	// Not models: hidden folder, file at the top, invalid name, broken link.
	writeFile(t, filepath.Join(root, ".git", "1", ModelFileName), modelBytes)
	writeFile(t, filepath.Join(root, "README.md"), "readme")
	mkdir(t, filepath.Join(root, "bad\x01name", "1"))
	symlink(t, filepath.Join(root, "nowhere"), filepath.Join(root, "dangling"))

	snap, err := Scan(root)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if got, want := modelNames(snap), []string{"a", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Fatalf("models = %q, want %q", got, want)
	}
	if snap.Root != root {
		t.Errorf("Root = %q, want %q", snap.Root, root)
	}
	badName := slices.ContainsFunc(snap.Problems, func(e error) bool { return errors.Is(e, ErrInvalidModelName) })
	dangling := slices.ContainsFunc(snap.Problems, func(e error) bool { return strings.Contains(e.Error(), "dangling: broken symbolic link") })
	if len(snap.Problems) != 2 || !badName || !dangling {
		t.Errorf("Problems = %v, want the invalid name and the dangling link", snap.Problems)
	}

	t.Run("versions numeric order and policy", func(t *testing.T) {
		a := mustModel(t, snap, "a")
		if a.Err != nil {
			t.Fatalf("a.Err = %v", a.Err)
		}
		if got := versionNumbers(a.Versions); !slices.Equal(got, []int64{1, 2, 10}) {
			t.Errorf("a versions = %v, want [1 2 10]", got)
		}
		if !slices.Equal(a.Selected, []int64{2, 10}) {
			t.Errorf("a selected = %v, want [2 10]", a.Selected)
		}
		if a.Dir != filepath.Join(root, "a") {
			t.Errorf("a.Dir = %q", a.Dir)
		}
		if len(a.Problems) != 2 {
			t.Errorf("a.Problems = %v, want the folders 0 and 01", a.Problems)
		}
	})
	t.Run("no config means batching auto", func(t *testing.T) {
		b := mustModel(t, snap, "b")
		if b.Err != nil || !reflect.DeepEqual(b.Config, NoFileConfig()) {
			t.Errorf("b = %+v", b)
		}
		if b.ConfigHash == sha256.Sum256(nil) {
			t.Errorf("b.ConfigHash is the hash of an empty config.yaml: adding one would not reload")
		}
		if !slices.Equal(b.Selected, []int64{1}) {
			t.Errorf("b selected = %v", b.Selected)
		}
	})
	t.Run("broken config isolated", func(t *testing.T) {
		c := mustModel(t, snap, "c")
		if !errors.Is(c.Err, ErrInvalidConfig) || !strings.Contains(c.Err.Error(), "max_batch_size") ||
			!strings.Contains(c.Err.Error(), filepath.Join(root, "c", ConfigFileName)) {
			t.Errorf("c.Err = %v, want an invalid config naming the file and field", c.Err)
		}
		if got := versionNumbers(c.Versions); !slices.Equal(got, []int64{1}) {
			t.Errorf("c versions = %v, want them listed anyway", got)
		}
		if len(c.Selected) != 0 {
			t.Errorf("c selected = %v, want none while the config is broken", c.Selected)
		}
	})
	t.Run("unusable version files", func(t *testing.T) {
		d := mustModel(t, snap, "d")
		for _, n := range []int64{1, 2, 3} {
			if v := mustVersion(t, d, n); !errors.Is(v.Err, ErrNoModelFile) || v.Path != "" {
				t.Errorf("d version %d = %+v, want ErrNoModelFile", n, v)
			}
		}
		if !slices.Equal(d.Selected, []int64{4}) {
			t.Errorf("d selected = %v, want [4]: broken versions are not candidates", d.Selected)
		}
	})
}

func TestScanFingerprint(t *testing.T) {
	root := t.TempDir()
	cfg := "max_batch_size: 4\n"
	writeFile(t, filepath.Join(root, "m", ConfigFileName), cfg)
	path := filepath.Join(root, "m", "1", ModelFileName)
	writeFile(t, path, modelBytes)

	snap, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	m := mustModel(t, snap, "m")
	v := mustVersion(t, m, 1)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Fingerprint{Size: fi.Size(), ModTime: fi.ModTime(), ConfigHash: sha256.Sum256([]byte(cfg))}
	if !v.Fingerprint.Equal(want) || m.ConfigHash != want.ConfigHash {
		t.Fatalf("fingerprint = %+v, want %+v", v.Fingerprint, want)
	}
	if v.Path != path {
		t.Errorf("Path = %q, want %q", v.Path, path)
	}

	writeFile(t, filepath.Join(root, "m", ConfigFileName), cfg+"instances: {count: 2}\n")
	snap2, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	if v2 := mustVersion(t, mustModel(t, snap2, "m"), 1); v2.Fingerprint.Equal(v.Fingerprint) {
		t.Error("fingerprint unchanged after the config changed")
	}
	writeFile(t, path, modelBytes+"more")
	snap3, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	v3 := mustVersion(t, mustModel(t, snap3, "m"), 1)
	if v3.Fingerprint.Size != int64(len(modelBytes)+4) {
		t.Errorf("size after rewrite = %d", v3.Fingerprint.Size)
	}
}

func TestScanSymlinks(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, ModelFileName), modelBytes)
	writeFile(t, filepath.Join(outside, ConfigFileName), "max_batch_size: 1\n")
	writeFile(t, filepath.Join(outside, "m", "1", ModelFileName), modelBytes)

	base := t.TempDir()
	real := filepath.Join(base, "real")
	writeFile(t, filepath.Join(real, "shared", "weights.onnx"), modelBytes)
	// m/1: link to a file outside the repository.
	symlink(t, filepath.Join(outside, ModelFileName), filepath.Join(real, "m", "1", ModelFileName))
	// m/2: relative link that climbs out.
	symlink(t, "../../../../"+filepath.Base(outside)+"/"+ModelFileName, filepath.Join(real, "m", "2", ModelFileName))
	// m/3: version folder linked outside.
	symlink(t, outside, filepath.Join(real, "m", "3"))
	// m/4: link inside the repository is fine.
	symlink(t, "../../shared/weights.onnx", filepath.Join(real, "m", "4", ModelFileName))
	// n: model folder linked outside.
	symlink(t, filepath.Join(outside, "m"), filepath.Join(real, "n"))
	// o: config linked outside.
	symlink(t, filepath.Join(outside, ConfigFileName), filepath.Join(real, "o", ConfigFileName))
	writeFile(t, filepath.Join(real, "o", "1", ModelFileName), modelBytes)
	// The root itself reached through a link.
	root := filepath.Join(base, "link")
	symlink(t, real, root)

	snap, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	m := mustModel(t, snap, "m")
	for _, n := range []int64{1, 2, 3} {
		v := mustVersion(t, m, n)
		if !errors.Is(v.Err, ErrOutsideRoot) || v.Path != "" {
			t.Errorf("version %d = %+v, want ErrOutsideRoot", n, v)
		}
	}
	v4 := mustVersion(t, m, 4)
	if v4.Err != nil || v4.Path != filepath.Join(real, "shared", "weights.onnx") {
		t.Errorf("version 4 = %+v, want the resolved in-repository file", v4)
	}
	if !slices.Equal(m.Selected, []int64{4}) {
		t.Errorf("selected = %v, want [4]", m.Selected)
	}
	if n := mustModel(t, snap, "n"); !errors.Is(n.Err, ErrOutsideRoot) || len(n.Versions) != 0 {
		t.Errorf("model n = %+v, want ErrOutsideRoot and nothing read", n)
	}
	if o := mustModel(t, snap, "o"); !errors.Is(o.Err, ErrOutsideRoot) || len(o.Selected) != 0 {
		t.Errorf("model o = %+v, want ErrOutsideRoot for its config", o)
	}
}

func TestScanRootErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Scan(filepath.Join(dir, "absent")); err == nil {
		t.Error("Scan of a missing root succeeded")
	}
	file := filepath.Join(dir, "file")
	writeFile(t, file, "x")
	if _, err := Scan(file); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("Scan of a file = %v", err)
	}
	snap, err := Scan(dir + "/")
	if err != nil || len(snap.Models) != 0 {
		t.Errorf("Scan of a repository without models = %+v, %v", snap, err)
	}
}

func TestScanModel(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "m", ConfigFileName), "version_policy: {all: true}\n")
	writeFile(t, filepath.Join(root, "m", "1", ModelFileName), modelBytes)
	writeFile(t, filepath.Join(root, "m", "2", ModelFileName), modelBytes)
	writeFile(t, filepath.Join(root, "f"), "a file")
	mkdir(t, filepath.Join(root, ".hidden"))

	m, err := ScanModel(root, "m")
	if err != nil {
		t.Fatalf("ScanModel: %v", err)
	}
	snap, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := mustModel(t, snap, "m"); !reflect.DeepEqual(m, want) {
		t.Errorf("ScanModel = %+v, want what Scan found: %+v", m, want)
	}
	if !slices.Equal(m.Selected, []int64{1, 2}) {
		t.Errorf("selected = %v, want [1 2]", m.Selected)
	}
	for _, tc := range []struct {
		name string
		want error
	}{
		{"absent", ErrModelNotFound},
		{"f", ErrModelNotFound},
		{"../m", ErrInvalidModelName},
		{".hidden", ErrInvalidModelName},
		{"", ErrInvalidModelName},
	} {
		if _, err := ScanModel(root, tc.name); !errors.Is(err, tc.want) {
			t.Errorf("ScanModel(%q) = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestValidModelName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"simple", true},
		{"resnet-50_v2.onnx", true},
		{"модель", true},
		{"1", true},
		{"with space", true},
		{"", false},
		{".", false},
		{"..", false},
		{".hidden", false},
		{"a/b", false},
		{`a\b`, false},
		{"tab\there", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"c1\u0085", false},
		{"bad\xffutf8", false},
		{strings.Repeat("x", 255), true},
		{strings.Repeat("x", 256), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidModelName(tt.name)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidModelName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidModelName) {
				t.Fatalf("error %v does not wrap ErrInvalidModelName", err)
			}
		})
	}
}

// TestScanEmptyConfig: an empty config.yaml is every default (no
// batching), unlike a missing one.
func TestScanEmptyConfig(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "e", ConfigFileName), "")
	writeFile(t, filepath.Join(root, "e", "1", ModelFileName), modelBytes)
	m, err := ScanModel(root, "e")
	if err != nil {
		t.Fatal(err)
	}
	if m.Err != nil || !reflect.DeepEqual(m.Config, DefaultConfig()) || m.ConfigHash != sha256.Sum256(nil) {
		t.Errorf("model with an empty config.yaml = %+v", m)
	}
}
