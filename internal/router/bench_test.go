package router

import "testing"

func BenchmarkPick(b *testing.B) {
	spec := Spec{Arms: split(50, 30, 20).Arms, Shadow: &Shadow{Version: 3, Percent: 25}}
	allReady, err := Build(spec, []int64{1, 2, 3})
	if err != nil {
		b.Fatal(err)
	}
	oneUnready, err := Build(spec, []int64{2, 3})
	if err != nil {
		b.Fatal(err)
	}
	keys := testKeys(1024)

	benches := []struct {
		name string
		tab  *Table
		f    func(tab *Table, i int)
	}{
		{name: "keyed", tab: allReady, f: func(tab *Table, i int) { tab.Pick(keys[i%len(keys)]) }},
		{name: "keyless", tab: allReady, f: func(tab *Table, _ int) { tab.Pick("") }},
		{name: "keyed/unready-arm", tab: oneUnready, f: func(tab *Table, i int) { tab.Pick(keys[i%len(keys)]) }},
		{name: "keyless/unready-arm", tab: oneUnready, f: func(tab *Table, _ int) { tab.Pick("") }},
		{name: "route-keyed", tab: allReady, f: func(tab *Table, i int) { tab.Route(keys[i%len(keys)]) }},
		{name: "route-keyless", tab: allReady, f: func(tab *Table, _ int) { tab.Route("") }},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bb.f(bb.tab, i)
				i++
			}
		})
	}
}
