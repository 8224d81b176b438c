package transport

import (
	"math/bits"
	"sync"
)

// BufferPool recycles the byte buffers both front ends copy large request
// payloads into, in power-of-two size classes, so a steady stream of large
// requests reuses a few buffers instead of allocating one each. The zero
// value is ready; safe for concurrent use.
type BufferPool struct {
	classes [64]sync.Pool
}

// Get returns a buffer of length n (n ≥ 1), reused when one of its size
// class is free.
func (p *BufferPool) Get(n int) *[]byte {
	class := bits.Len(uint(n - 1))
	if v, ok := p.classes[class].Get().(*[]byte); ok {
		*v = (*v)[:n]
		return v
	}
	b := make([]byte, n, 1<<class)
	return &b
}

// Put hands b back for reuse; a buffer Get did not make is dropped.
func (p *BufferPool) Put(b *[]byte) {
	class := bits.Len(uint(cap(*b) - 1))
	if cap(*b) == 1<<class {
		p.classes[class].Put(b)
	}
}
