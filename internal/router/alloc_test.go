//go:build !race

package router

import "testing"

func TestRoutingDoesNotAllocate(t *testing.T) {
	spec := Spec{Arms: split(50, 30, 20).Arms, Shadow: &Shadow{Version: 3, Percent: 25}}
	allReady := mustBuild(t, spec, 1, 2, 3)
	// Version 1 is unready, so half of the keys go through the rendezvous
	// redistribution.
	oneUnready := mustBuild(t, spec, 2, 3)
	keys := testKeys(64)

	tests := []struct {
		name string
		f    func(i int)
	}{
		{name: "Pick keyed", f: func(i int) { allReady.Pick(keys[i%len(keys)]) }},
		{name: "Pick keyless", f: func(int) { allReady.Pick("") }},
		{name: "Pick keyed with an unready arm", f: func(i int) { oneUnready.Pick(keys[i%len(keys)]) }},
		{name: "Pick keyless with an unready arm", f: func(int) { oneUnready.Pick("") }},
		{name: "Shadow keyed", f: func(i int) { allReady.Shadow(keys[i%len(keys)]) }},
		{name: "Shadow keyless", f: func(int) { allReady.Shadow("") }},
		{name: "Route keyed", f: func(i int) { oneUnready.Route(keys[i%len(keys)]) }},
		{name: "Route keyless", f: func(int) { oneUnready.Route("") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := 0
			if n := testing.AllocsPerRun(1000, func() { tt.f(i); i++ }); n != 0 {
				t.Errorf("%v allocations per call, want 0", n)
			}
		})
	}
}
