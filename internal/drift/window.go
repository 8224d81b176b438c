package drift

import "time"

// BucketWidth is the width of one bucket of the sliding window.
const BucketWidth = time.Minute

// window holds bin counts in one bucket per minute: the statistics cover
// the window's whole minutes before the current one and the current one so
// far, so a minute boundary never empties it. Owned by one goroutine at a
// time (its Monitor's lock).
type window struct {
	buckets []bucket
	bins    int // bins of all features together
	feats   int
}

// bucket is one minute of counts. counts holds every feature's bins one
// after another; nan, inf and n (all values) are per feature.
type bucket struct {
	minute      int64
	rows        int64
	counts      []int64
	nan, inf, n []int64
}

func newWindow(width time.Duration, feats, bins int) *window {
	k := max(int((width+BucketWidth-1)/BucketWidth), 1) + 1
	w := &window{buckets: make([]bucket, k), bins: bins, feats: feats}
	for i := range w.buckets {
		w.buckets[i] = bucket{minute: -1, counts: make([]int64, bins),
			nan: make([]int64, feats), inf: make([]int64, feats), n: make([]int64, feats)}
	}
	return w
}

func minuteOf(t time.Time) int64 { return t.Unix() / int64(BucketWidth/time.Second) }

// at returns the bucket of time t, emptied when it last held an older
// minute; nil when t is older than the bucket's minute (too late to count).
func (w *window) at(t time.Time) *bucket {
	m := minuteOf(t)
	b := &w.buckets[m%int64(len(w.buckets))]
	switch {
	case b.minute == m:
		return b
	case b.minute > m:
		return nil
	}
	b.minute, b.rows = m, 0
	clear(b.counts)
	clear(b.nan)
	clear(b.inf)
	clear(b.n)
	return b
}

// sum adds up the buckets of the window that ends at now into dst (a
// bucket of the same sizes) and returns it.
func (w *window) sum(now time.Time, dst *bucket) *bucket {
	m := minuteOf(now)
	dst.rows = 0
	clear(dst.counts)
	clear(dst.nan)
	clear(dst.inf)
	clear(dst.n)
	for i := range w.buckets {
		b := &w.buckets[i]
		if b.minute < 0 || b.minute > m || b.minute <= m-int64(len(w.buckets)) {
			continue
		}
		dst.rows += b.rows
		for j, c := range b.counts {
			dst.counts[j] += c
		}
		for j := range b.n {
			dst.nan[j] += b.nan[j]
			dst.inf[j] += b.inf[j]
			dst.n[j] += b.n[j]
		}
	}
	return dst
}
