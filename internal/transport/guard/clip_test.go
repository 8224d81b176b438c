package guard

import (
	"strings"
	"testing"
)

func TestClip(t *testing.T) {
	long := strings.Repeat("a", 70_000)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"no quotes", "model not found", "model not found"},
		{"short quote", `model "m" not found`, `model "m" not found`},
		{"long quote", `model "` + long + `" not found`, `model "` + long[:48] + `…" (+69952 bytes) not found`},
		{"escape at the cut", `x "` + strings.Repeat("a", 47) + `\"` + long + `" y`, `x "` + strings.Repeat("a", 47) + `…" (+70002 bytes) y`},
		{"two quotes, one long", `input "` + long + `" of model "m"`, `input "` + long[:48] + `…" (+69952 bytes) of model "m"`},
		{"unterminated", `bad "` + long[:100], `bad "` + long[:100]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Clip(tc.in); got != tc.want {
				t.Errorf("Clip = %.200q, want %.200q", got, tc.want)
			}
		})
	}
	t.Run("unquoted text is bounded", func(t *testing.T) {
		got := Clip("bad token " + long)
		if len(got) > MaxMessageBytes+len("… (truncated)") || !strings.HasSuffix(got, "… (truncated)") {
			t.Errorf("Clip of %d bytes = %d bytes ending %q", len(long), len(got), got[len(got)-20:])
		}
	})
	t.Run("scrub clips", func(t *testing.T) {
		if got := NewPathScrubber().Scrub(`model "` + long + `"`); len(got) > 100 {
			t.Errorf("Scrub kept %d bytes of a long client string", len(got))
		}
	})
}

func TestClipAllocs(t *testing.T) {
	msg := `model "m": input "x" has shape [1 2], want [1 4]`
	if n := testing.AllocsPerRun(100, func() { _ = Clip(msg) }); n != 0 {
		t.Errorf("Clip of a message without long quotes allocates %v times", n)
	}
}
