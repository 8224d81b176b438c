package guard

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// PathScrubber removes host file paths from messages sent to clients. Load
// failures carry the model file's absolute path, and ONNX Runtime repeats
// it in its own errors; a client needs the model and version, not the
// layout of the host. Paths inside the model repository become relative to
// it ("classifier/1/model.onnx"); any other absolute path becomes
// "<path>". Logs keep the full messages. A PathScrubber never changes once
// built, so it is safe for concurrent use; the zero value scrubs only
// absolute paths outside any root.
type PathScrubber struct {
	roots []string // with a trailing separator, longest first
}

// absPath matches an absolute path that starts a message or follows a
// space, "(" or "=": how errors print paths. Quoted text, where clients'
// own values appear, is left alone.
var absPath = regexp.MustCompile(`(^|[\s(=])/[^\s:,;"'()]+`)

// NewPathScrubber returns a scrubber for paths under roots, each taken as
// given, as an absolute path and with symbolic links resolved, since
// errors may spell a path any of these ways.
func NewPathScrubber(roots ...string) PathScrubber {
	var p PathScrubber
	add := func(r string) {
		if r == "" || r == "/" || !filepath.IsAbs(r) {
			return
		}
		r = strings.TrimSuffix(filepath.Clean(r), "/") + "/"
		if !slices.Contains(p.roots, r) {
			p.roots = append(p.roots, r)
		}
	}
	for _, r := range roots {
		abs, err := filepath.Abs(r)
		if err != nil {
			continue
		}
		add(abs)
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			add(real)
		}
	}
	slices.SortFunc(p.roots, func(a, b string) int { return len(b) - len(a) })
	return p
}

// Scrub returns msg with host paths removed and long client strings
// shortened (Clip).
func (p PathScrubber) Scrub(msg string) string {
	msg = Clip(msg)
	if !strings.Contains(msg, "/") {
		return msg
	}
	for _, r := range p.roots {
		msg = strings.ReplaceAll(msg, r, "")
		msg = replaceWhole(msg, strings.TrimSuffix(r, "/"), ".")
	}
	return absPath.ReplaceAllString(msg, "$1<path>")
}

// replaceWhole replaces the occurrences of path in msg that are a whole
// path, not the start of a longer name ("/models" in "/models2").
func replaceWhole(msg, path, with string) string {
	var b strings.Builder
	for {
		i := strings.Index(msg, path)
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		end := i + len(path)
		b.WriteString(msg[:i])
		if end == len(msg) || !isPathByte(msg[end]) {
			b.WriteString(with)
		} else {
			b.WriteString(path)
		}
		msg = msg[end:]
	}
}

func isPathByte(c byte) bool {
	return c == '/' || c == '.' || c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
