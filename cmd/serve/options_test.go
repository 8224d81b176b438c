package main

import (
	"runtime/debug"
	"testing"
)

func TestGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	noEnv := func(string) string { return "" }
	cases := []struct {
		name       string
		args       []string
		getenv     func(string) string
		runtime    int // the runtime's target before applyGC, as GOGC would set it
		want       int
		wantSource string
	}{
		{"default", nil, noEnv, 100, defaultGCPercent, "default"},
		{"flag", []string{"--gc-percent", "250"}, noEnv, 100, 250, "--gc-percent"},
		{"flag beats GOGC", []string{"--gc-percent", "-1"}, func(string) string { return "150" }, 150, -1, "--gc-percent"},
		{"GOGC kept", nil, func(k string) string {
			if k == "GOGC" {
				return "150"
			}
			return ""
		}, 150, 150, "GOGC"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			debug.SetGCPercent(c.runtime)
			o, err := parseOptions(c.args)
			if err != nil {
				t.Fatal(err)
			}
			got, source := o.applyGC(c.getenv)
			if got != c.want || source != c.wantSource {
				t.Fatalf("applyGC = %d from %s, want %d from %s", got, source, c.want, c.wantSource)
			}
			if inForce := debug.SetGCPercent(100); inForce != c.want {
				t.Fatalf("collector target in force %d, want %d", inForce, c.want)
			}
		})
	}
	if _, err := parseOptions([]string{"--gc-percent", "-2"}); err == nil {
		t.Fatal("--gc-percent -2 accepted")
	}
}
