package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

// committedRepo is the bundled model repository, relative to this package.
const committedRepo = "../../models"

// TestCommittedModelsAreCurrent holds the committed repository to the
// generator, so a change to either one alone fails here. Fix a failure with
// "go run ./cmd/genmodels -out models" from the module root.
func TestCommittedModelsAreCurrent(t *testing.T) {
	dir := t.TempDir()
	files := repository()
	if err := write(dir, files); err != nil {
		t.Fatalf("write: %v", err)
	}
	for _, f := range files {
		t.Run(f.path, func(t *testing.T) {
			generated, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.path)))
			if err != nil {
				t.Fatalf("read generated file: %v", err)
			}
			if !bytes.Equal(generated, f.data) {
				t.Fatalf("generated file holds %d bytes, want the %d bytes built", len(generated), len(f.data))
			}
			committed, err := os.ReadFile(filepath.Join(committedRepo, filepath.FromSlash(f.path)))
			if err != nil {
				t.Fatalf("read committed file: %v (run go run ./cmd/genmodels -out models)", err)
			}
			if !bytes.Equal(committed, generated) {
				t.Errorf("models/%s is stale: %d bytes committed, %d generated (run go run ./cmd/genmodels -out models)",
					f.path, len(committed), len(generated))
			}
		})
	}
}

func TestRepositoryLayout(t *testing.T) {
	want := []string{
		"classifier/1/model.onnx",
		"classifier/2/model.onnx",
		"classifier/config.yaml",
		"classifier/labelled.jsonl",
		"classifier/labels.txt",
		"classifier/reference.npy",
		"simple/1/model.onnx",
		"simple/config.yaml",
		"simple_string/1/model.onnx",
		"simple_string/config.yaml",
	}
	var got []string
	for _, f := range repository() {
		got = append(got, f.path)
		if len(f.data) == 0 || len(f.data) > 1<<20 {
			t.Errorf("%s is %d bytes, want 1 byte to 1 MiB", f.path, len(f.data))
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("files = %v, want %v", got, want)
	}
}

func TestRepositoryIsDeterministic(t *testing.T) {
	first, second := repository(), repository()
	for i := range first {
		if first[i].path != second[i].path || !bytes.Equal(first[i].data, second[i].data) {
			t.Errorf("%s differs between two runs", first[i].path)
		}
	}
}

func TestConfigs(t *testing.T) {
	batching := func(delay string, preferred ...int) map[string]any {
		return map[string]any{
			"max_queue_delay":       delay,
			"preferred_batch_sizes": preferred,
			"max_queue_size":        1024,
			"default_timeout":       "5s",
		}
	}
	tests := []struct {
		path string
		want map[string]any
	}{
		{"simple/config.yaml", map[string]any{
			"max_batch_size":   8,
			"dynamic_batching": batching("500us", 4, 8),
		}},
		{"simple_string/config.yaml", map[string]any{
			"max_batch_size":   8,
			"dynamic_batching": batching("500us", 4, 8),
		}},
		{"classifier/config.yaml", map[string]any{
			"max_batch_size":   32,
			"dynamic_batching": batching("1ms", 8, 16, 32),
			"version_policy":   map[string]any{"all": true},
			"monitoring": map[string]any{"task": "classification", "labels": "labels.txt",
				"feedback_ttl": "72h", "window": "1h"},
		}},
	}
	files := map[string][]byte{}
	for _, f := range repository() {
		files[f.path] = f.data
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			data, ok := files[tc.path]
			if !ok {
				t.Fatal("not generated")
			}
			var got map[string]any
			if err := yaml.Unmarshal(data, &got); err != nil {
				t.Fatalf("parse: %v", err)
			}
			// Round-trip the expectation through YAML so both sides use
			// the decoder's types ([]any, int) for comparison.
			wantYAML, err := yaml.Marshal(tc.want)
			if err != nil {
				t.Fatalf("marshal expectation: %v", err)
			}
			var want map[string]any
			if err := yaml.Unmarshal(wantYAML, &want); err != nil {
				t.Fatalf("parse expectation: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("config = %v, want %v", got, want)
			}
		})
	}
}

func TestWriteReplacesFiles(t *testing.T) {
	dir := t.TempDir()
	if err := write(dir, []file{{"m/config.yaml", []byte("old")}}); err != nil {
		t.Fatalf("first write: %v", err)
	}
	if err := write(dir, []file{{"m/config.yaml", []byte("new")}}); err != nil {
		t.Fatalf("second write: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "m", "config.yaml"))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != "new" {
		t.Errorf("file holds %q, want %q", got, "new")
	}
	entries, err := os.ReadDir(filepath.Join(dir, "m"))
	if err != nil {
		t.Fatalf("read dir: %v", err)
	}
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only config.yaml (a temporary file was left behind?)", len(entries))
	}
	info, err := os.Stat(filepath.Join(dir, "m", "config.yaml"))
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if info.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", info.Mode().Perm())
	}
}

// TestCandidatesStayOutOfTheRepository: the rollout candidates are written
// only on request, never into the bundled repository.
func TestCandidatesStayOutOfTheRepository(t *testing.T) {
	for _, c := range candidates() {
		for _, f := range repository() {
			if bytes.Equal(c.data, f.data) {
				t.Errorf("candidate %s is also %s", c.path, f.path)
			}
		}
		if len(c.data) == 0 {
			t.Errorf("candidate %s is empty", c.path)
		}
	}
	dir := t.TempDir()
	if err := write(dir, candidates()); err != nil {
		t.Fatal(err)
	}
}
