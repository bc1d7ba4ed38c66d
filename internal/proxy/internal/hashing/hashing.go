// Package hashing is the proxy's stable 64-bit hash, shared by the route's
// hash_policy (router) and the consistent-hash load balancers (cluster), so
// every proxy sends one key to the same host.
package hashing

// String is FNV-1a with a final avalanche.
func String(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

// Bytes is String for a byte slice.
func Bytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return mix(h)
}

// mix is splitmix64's finalizer: it spreads FNV's low-entropy high bits,
// which matters for ring lookups by range.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
