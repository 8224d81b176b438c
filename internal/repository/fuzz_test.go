package repository

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// normalized returns c with empty lists made nil: the parser keeps "[]"
// as an empty list, which the encoder leaves out, and both mean the same.
func normalized(c Config) Config {
	c = c.Clone()
	if c.DynamicBatching != nil && len(c.DynamicBatching.PreferredBatchSizes) == 0 {
		c.DynamicBatching.PreferredBatchSizes = nil
	}
	if len(c.Warmup.BatchSizes) == 0 {
		c.Warmup.BatchSizes = nil
	}
	return c
}

// FuzzParseConfig: ParseConfig never panics, rejects only with errors
// wrapping ErrInvalidConfig, and every config it accepts validates again
// and survives being written out and read back unchanged, so what a
// server persists (a traffic PUT rewrites config.yaml) is what it parsed.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("max_batch_size: 8\ndynamic_batching:\n  max_queue_delay: 500us\n  preferred_batch_sizes: [4, 8]\n"))
	f.Add([]byte("traffic:\n  split: {\"1\": 90, \"2\": 10}\n  shadow: {version: 3, percent: 25}\nversion_policy: {all: true}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		again, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("re-encoded config rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalized(cfg), normalized(again)) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v\n%s", cfg, again, out)
		}
		out2, err := yaml.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", out, out2)
		}
	})
}

// FuzzParseTraffic: the traffic PUT body parser never panics, rejects only
// with ErrInvalidConfig errors, and an accepted block validates, reads back
// the same from YAML and from JSON, and is what config.yaml holds after the
// server persists it.
func FuzzParseTraffic(f *testing.F) {
	f.Add([]byte(`{"split":{"1":50,"2":50},"sticky_key":"x-user"}`))
	f.Add([]byte("shadow: {version: 2, percent: 10}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ParseTraffic(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		if err := ValidateTraffic(tr); err != nil {
			t.Fatalf("accepted block does not validate: %v", err)
		}
		y, err := yaml.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		j, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		for _, enc := range [][]byte{y, j} {
			again, err := ParseTraffic(enc)
			if err != nil {
				t.Fatalf("re-encoded block rejected: %v\n%s", err, enc)
			}
			if !reflect.DeepEqual(tr, again) {
				t.Fatalf("round trip through %s changed the block: %+v became %+v", enc, tr, again)
			}
		}
		doc, err := withTraffic([]byte("max_batch_size: 4\n"), tr)
		if err != nil {
			t.Fatalf("persist: %v", err)
		}
		cfg, err := ParseConfig(doc)
		if err != nil {
			t.Fatalf("persisted config rejected: %v\n%s", err, doc)
		}
		if cfg.Traffic == nil || !reflect.DeepEqual(*cfg.Traffic, tr) {
			t.Fatalf("persisted block %+v, want %+v\n%s", cfg.Traffic, tr, doc)
		}
	})
}

// TestFuzzSeeds checks that the committed corpora say what their file names
// claim: "bad_" seeds are rejected, the others accepted.
func TestFuzzSeeds(t *testing.T) {
	parse := map[string]func([]byte) error{
		"FuzzParseConfig":  func(b []byte) error { _, err := ParseConfig(b); return err },
		"FuzzParseTraffic": func(b []byte) error { _, err := ParseTraffic(b); return err },
	}
	for target, fn := range parse {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no seed corpus (%v)", target, err)
		}
		for _, file := range files {
			t.Run(target+"/"+filepath.Base(file), func(t *testing.T) {
				raw, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				header, arg, _ := strings.Cut(strings.TrimSpace(string(raw)), "\n")
				quoted, ok := strings.CutPrefix(arg, "[]byte(")
				if header != "go test fuzz v1" || !ok {
					t.Fatalf("not a one-argument corpus file: %q", raw)
				}
				data, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
				if err != nil {
					t.Fatal(err)
				}
				err = fn([]byte(data))
				if bad := strings.HasPrefix(filepath.Base(file), "bad_"); bad != (err != nil) {
					t.Fatalf("error %v; a bad_ seed: %v", err, bad)
				}
			})
		}
	}
}
