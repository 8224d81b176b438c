package guard

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPathScrubber(t *testing.T) {
	p := NewPathScrubber("/srv/models", "/srv/models/", "relative/ignored/when/missing")
	tests := []struct{ in, want string }{
		{"load /srv/models/m/1/model.onnx: failed", "load m/1/model.onnx: failed"},
		{"Load model from /srv/models/m/1/model.onnx failed:Protobuf parsing failed.", "Load model from m/1/model.onnx failed:Protobuf parsing failed."},
		{"repository root /srv/models: not a folder", "repository root .: not a folder"},
		{"/srv/models/evil -> /home/alice/m: path resolves outside", "evil -> <path>: path resolves outside"},
		{"/srv/models2/x: open failed", "<path>: open failed"},
		{"open (/etc/passwd) failed", "open (<path>) failed"},
		{`input "/not/a/path": unknown datatype`, `input "/not/a/path": unknown datatype`},
		{"no slash at all", "no slash at all"},
		{"5/3 is not a path", "5/3 is not a path"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := p.Scrub(tt.in); got != tt.want {
				t.Fatalf("Scrub = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPathScrubberResolvesLinks checks that a root reached through a
// symbolic link is scrubbed in both spellings.
func TestPathScrubberResolvesLinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	p := NewPathScrubber(link)
	resolved, err := filepath.EvalSymlinks(real)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{link + "/m/1/model.onnx: bad", resolved + "/m/1/model.onnx: bad"} {
		if got := p.Scrub(in); got != "m/1/model.onnx: bad" {
			t.Errorf("Scrub(%q) = %q", in, got)
		}
	}
}
