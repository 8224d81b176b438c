package router

import "math/bits"

// The hash of a routing key decides which arm a sticky caller lands on, so it
// must give the same value in every process and every release: a seeded or
// per-process hash (hash/maphash) would reshuffle every sticky caller on each
// restart. Changing any constant or step below moves every sticky key.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211

	// shadowSalt separates the shadow decision from the arm choice, so that
	// the mirrored keys are not simply the keys of one arm.
	shadowSalt = 0x9e3779b97f4a7c15
	// armSalt turns a version number into the per-arm seed of the
	// redistribution hash.
	armSalt = 0xd1b54a32d192ed03
)

// Hash returns the 64-bit routing hash of key: FNV-1a followed by a 64-bit
// finaliser that spreads FNV's weak high bits. It is stable across processes,
// platforms and releases, does not allocate and is safe for concurrent use.
// Callers that route one key through several tables can hash once and use
// Table.PickHash and Table.ShadowHash.
func Hash(key string) uint64 {
	return mix(fnv1a(key))
}

func fnv1a(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// mix is the SplitMix64 finaliser: a bijection on uint64 in which every
// input bit affects every output bit, used to derive independent-looking
// hashes from one key hash.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// fraction returns the point floor(num/den * 2^64), the boundary of a share
// num/den of the hash space. It requires num < den.
func fraction(num, den uint64) uint64 {
	q, _ := bits.Div64(num, 0, den)
	return q
}
