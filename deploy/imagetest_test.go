package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// imageTestScript is `make image-test`.
var imageTestScript = filepath.Join(repoRoot, "scripts", "image-test.sh")

// toolDir returns a folder holding links to the named programs of this
// machine, and the given fake scripts: a PATH on which exactly those exist.
func toolDir(t *testing.T, tools []string, fakes map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range fakes {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestImageTestSkips: `make image-test` is opt-in; where it cannot run it
// says why and succeeds, so `make image-test` in CI without a builder is
// not a failure, and a missing base image is told apart from a broken one.
func TestImageTestSkips(t *testing.T) {
	tools := []string{"bash", "dirname", "sed", "grep", "head"}
	cases := []struct {
		name  string
		fakes map[string]string
		want  string
	}{
		{"no podman", nil, "SKIPPED: podman is not installed"},
		{"no base images", map[string]string{"podman": "exit 1"}, "SKIPPED: base image docker.io/library/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(imageTestScript)
			cmd.Env = []string{"PATH=" + toolDir(t, tools, c.fakes)}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("image-test.sh: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Fatalf("output %q lacks %q", out, c.want)
			}
		})
	}
}

// TestImageTestTarget: the Makefile's image-test target runs the script,
// and the script builds the Dockerfile and runs it as the Deployment does.
func TestImageTestTarget(t *testing.T) {
	mk := string(read(t, filepath.Join(repoRoot, "Makefile")))
	if !strings.Contains(mk, "image-test:") || !strings.Contains(mk, "scripts/image-test.sh") {
		t.Error("Makefile has no image-test target running scripts/image-test.sh")
	}
	script := string(read(t, imageTestScript))
	for _, want := range []string{"--read-only", "--user 65532:65532", "--cap-drop ALL", "no-new-privileges", "/models:ro", "/v2/health/ready", "/infer", "podman stop", "ExitCode"} {
		if !strings.Contains(script, want) {
			t.Errorf("scripts/image-test.sh lacks %q", want)
		}
	}
}
