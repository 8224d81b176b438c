package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runBinary runs the built binary and returns its exit status and output.
func runBinary(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	}
	t.Fatalf("run %v: %v", args, err)
	return 0, ""
}

// junitReport is the part of JUnit XML a CI system reads.
type junitReport struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Name    string `xml:"name,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// TestCheckCommand runs `onnxserve check` on the bundled repository and on
// copies broken in each way it must catch: a corrupt model file, a config
// error, a golden test that no longer matches, a blown latency budget.
// Each failure exits 1, names the model and version, and shows in the
// JUnit report.
func TestCheckCommand(t *testing.T) {
	requireORT(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildServer(t)
	tests := []struct {
		name    string
		breakIt func(t *testing.T, repo string)
		status  int
		want    []string // lines or parts the report must hold
	}{
		{"bundled models pass", nil, 0, []string{"PASS  classifier v2            golden tests/two_rows.json", "PASS  simple_string v1         golden tests/add_sub.json", "0 failed"}},
		{"corrupt model file", func(t *testing.T, repo string) {
			if err := os.WriteFile(filepath.Join(repo, "simple", "1", "model.onnx"), []byte("not a model"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, 1, []string{"FAIL  simple v1                load", "UNAVAILABLE"}},
		{"config error", func(t *testing.T, repo string) {
			appendFile(t, filepath.Join(repo, "classifier", "config.yaml"), "max_batch: 3\n")
		}, 1, []string{"FAIL  classifier               config", "max_batch: unknown field"}},
		{"golden mismatch", func(t *testing.T, repo string) {
			p := filepath.Join(repo, "simple", "1", "tests", "add_sub.json")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.Replace(b, []byte(`"data": [1,2,3,4,5,`), []byte(`"data": [1,2,7,4,5,`), 1)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, 1, []string{"FAIL  simple v1                golden tests/add_sub.json", `output "OUTPUT0": 1 of 16 elements differ`, "OUTPUT0[0 2]: got 3, want 7"}},
		{"latency budget kept", func(t *testing.T, repo string) {
			appendFile(t, filepath.Join(repo, "classifier", "config.yaml"), "check: {batch: 8, p99: 1m}\n")
		}, 0, []string{"PASS  classifier v1            latency", "budget 1m0s"}},
		{"latency budget blown", func(t *testing.T, repo string) {
			appendFile(t, filepath.Join(repo, "classifier", "config.yaml"), "check: {batch: 8, p99: 1ns}\n")
		}, 1, []string{"FAIL  classifier v1            latency", "latency budget blown: p99", "batch 8 (budget 1ns)"}},
		{"unknown model", nil, 1, []string{`model "nope" not found`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := copyRepo(t)
			if tt.breakIt != nil {
				tt.breakIt(t, repo)
			}
			junit := filepath.Join(t.TempDir(), "report.xml")
			args := []string{"check", "--model-repository", repo, "--junit", junit, "--latency-requests", "20"}
			if tt.name == "unknown model" {
				args = append(args, "--model", "nope")
			}
			status, out := runBinary(t, bin, args...)
			if status != tt.status {
				t.Errorf("exit status %d, want %d\n%s", status, tt.status, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("report lacks %q:\n%s", w, out)
				}
			}
			b, err := os.ReadFile(junit)
			if err != nil {
				t.Fatal(err)
			}
			var rep junitReport
			if err := xml.Unmarshal(b, &rep); err != nil {
				t.Fatalf("JUnit report does not parse: %v\n%s", err, b)
			}
			fails := strings.Count(out, "\nFAIL  ")
			if strings.HasPrefix(out, "FAIL  ") {
				fails++
			}
			if rep.Failures != fails || rep.Tests == 0 {
				t.Errorf("JUnit report: %d tests, %d failures; the text report has %d failures", rep.Tests, rep.Failures, fails)
			}
			n := 0
			for _, s := range rep.Suites {
				for _, c := range s.Cases {
					n++
					if c.Failure != nil && c.Failure.Message == "" {
						t.Errorf("%s %s: failure without a message", s.Name, c.Name)
					}
				}
			}
			if n != rep.Tests {
				t.Errorf("JUnit report counts %d tests and holds %d", rep.Tests, n)
			}
		})
	}
}
