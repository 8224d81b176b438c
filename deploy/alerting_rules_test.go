package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// prometheusDir holds the alerting rules.
const prometheusDir = "prometheus"

// TestAlertingRules runs `promtool check rules` on every rule file in
// prometheus/ and `promtool test rules` on their tests, and checks that
// every onnxserve_ series a rule reads is one the server exports (its name
// appears in the server's source). promtool comes with Debian's prometheus
// package (scripts/ensure-tools.sh); without it the test skips, unless
// ONNXSERVE_REQUIRE_TOOLS=1 (set by `make test`) makes that a failure.
func TestAlertingRules(t *testing.T) {
	tests, err := filepath.Glob(filepath.Join(prometheusDir, "*.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	all, err := filepath.Glob(filepath.Join(prometheusDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, f := range all {
		if !strings.HasSuffix(f, ".test.yaml") {
			rules = append(rules, f)
		}
	}
	if len(rules) == 0 || len(tests) == 0 {
		t.Fatalf("no rule files or no rule tests in %s/", prometheusDir)
	}
	metric := regexp.MustCompile(`onnxserve_[a-z_]+`)
	source := serverSource(t)
	for _, f := range rules {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range metric.FindAllString(string(b), -1) {
			if !strings.Contains(source, `"`+name+`"`) {
				t.Errorf("%s reads %s, which the server does not export", f, name)
			}
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("ONNXSERVE_REQUIRE_TOOLS") == "1" {
			t.Fatalf("promtool required: %v", err)
		}
		t.Skipf("no promtool on PATH (scripts/ensure-tools.sh installs prometheus): %v", err)
	}
	if out, err := exec.Command(promtool, append([]string{"check", "rules"}, rules...)...).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	cmd := exec.Command(promtool, append([]string{"test", "rules"}, relativeTo(prometheusDir, tests)...)...)
	cmd.Dir = prometheusDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}

// serverSource is the text of the server's Go files under internal/.
func serverSource(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.WalkDir(filepath.Join(repoRoot, "internal"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		sb.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

func relativeTo(dir string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i], _ = filepath.Rel(dir, p)
	}
	return out
}
