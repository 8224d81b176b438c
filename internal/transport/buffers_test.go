package transport

import "testing"

func TestBufferPool(t *testing.T) {
	var p BufferPool
	for _, c := range []struct{ n, wantCap int }{{1, 1}, {5, 8}, {8, 8}, {4097, 8192}} {
		b := p.Get(c.n)
		if len(*b) != c.n || cap(*b) != c.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", c.n, len(*b), cap(*b), c.n, c.wantCap)
		}
		p.Put(b)
	}
	odd := make([]byte, 3, 6)
	p.Put(&odd) // not a size class: dropped
	if b := p.Get(5); cap(*b) != 8 {
		t.Errorf("a buffer Get did not make was handed out: cap %d", cap(*b))
	}
}
