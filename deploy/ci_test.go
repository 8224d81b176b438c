package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// actionlint is the pinned GitHub Actions linter, run with `go run`.
const actionlint = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"

// TestCIWorkflowLints runs actionlint (and, through it, shellcheck when
// installed) on the example workflows in ci/. When the linter cannot be
// fetched the test skips, unless ONNXSERVE_REQUIRE_TOOLS=1 (set by `make
// test` where the tools are available) makes that a failure.
func TestCIWorkflowLints(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches and builds actionlint")
	}
	files, err := filepath.Glob(filepath.Join("ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no workflows in ci/: %v", err)
	}
	if out, err := exec.Command("go", "run", actionlint, "-version").CombinedOutput(); err != nil {
		if os.Getenv("ONNXSERVE_REQUIRE_TOOLS") == "1" {
			t.Fatalf("actionlint unavailable: %v\n%s", err, out)
		}
		t.Skipf("actionlint unavailable: %v\n%s", err, out)
	}
	out, err := exec.Command("go", append([]string{"run", actionlint, "-no-color"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("actionlint: %v\n%s", err, out)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "onnxserve check --model-repository") {
			t.Errorf("%s does not run onnxserve check", f)
		}
	}
}
