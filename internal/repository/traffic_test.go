package repository

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteTraffic(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "m")
	if err := os.MkdirAll(filepath.Join(dir, "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	orig := "# keep this comment\nmax_batch_size: 8 # rows\ntraffic:\n  split: {\"1\": 90, \"2\": 10}\n"
	if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := Traffic{Split: map[string]int{"1": 50, "2": 50}, StickyKey: "user-id", Shadow: &Shadow{Version: 2, Percent: 5}}
	if err := WriteTraffic(root, "m", tr); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "# keep this comment") || !strings.Contains(string(data), "# rows") {
		t.Errorf("comments lost:\n%s", data)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		t.Fatalf("written file does not parse: %v\n%s", err, data)
	}
	if cfg.MaxBatchSize != 8 || cfg.Traffic == nil || cfg.Traffic.Split["1"] != 50 || cfg.Traffic.Split["2"] != 50 ||
		cfg.Traffic.StickyKey != "user-id" || cfg.Traffic.Shadow == nil || cfg.Traffic.Shadow.Percent != 5 {
		t.Errorf("round trip: %+v %+v", cfg, cfg.Traffic)
	}
	if fi, _ := os.Stat(filepath.Join(dir, ConfigFileName)); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode changed to %v", fi.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".config.yaml.*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// A model with no config.yaml gets one holding just the traffic block.
	if err := os.MkdirAll(filepath.Join(root, "n", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteTraffic(root, "n", Traffic{Split: map[string]int{"1": 1}, StickyKey: DefaultStickyKey}); err != nil {
		t.Fatal(err)
	}
	cfg, err = LoadConfig(filepath.Join(root, "n", ConfigFileName))
	if err != nil || cfg.Traffic == nil || cfg.Traffic.Split["1"] != 1 {
		t.Errorf("new file: %+v, %v", cfg.Traffic, err)
	}

	for _, bad := range []string{"../x", "missing"} {
		if err := WriteTraffic(root, bad, tr); err == nil {
			t.Errorf("WriteTraffic(%q) succeeded", bad)
		}
	}
}
