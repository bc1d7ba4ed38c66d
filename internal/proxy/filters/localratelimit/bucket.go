package localratelimit

import (
	"sync"
	"time"
)

// bucket is Envoy's local rate limit token bucket: it starts full with
// maxTokens and gains tokensPerFill every fillInterval (in whole
// intervals, as Envoy's fill timer does), never above maxTokens.
type bucket struct {
	maxTokens, tokensPerFill uint64
	fillInterval             time.Duration

	mu       sync.Mutex
	tokens   uint64
	lastFill time.Time
}

func newBucket(maxTokens, tokensPerFill uint64, fillInterval time.Duration, now time.Time) *bucket {
	return &bucket{maxTokens: maxTokens, tokensPerFill: tokensPerFill, fillInterval: fillInterval, tokens: maxTokens, lastFill: now}
}

// refill adds the tokens of every interval elapsed since the last fill.
// The caller holds mu.
func (b *bucket) refill(now time.Time) {
	elapsed := now.Sub(b.lastFill)
	if elapsed < b.fillInterval {
		return
	}
	n := uint64(elapsed / b.fillInterval)
	b.lastFill = b.lastFill.Add(time.Duration(n) * b.fillInterval)
	// Compare in intervals rather than tokens so n*tokensPerFill cannot
	// overflow: the bucket is full once n covers what is missing.
	missing := b.maxTokens - b.tokens
	if n >= (missing+b.tokensPerFill-1)/b.tokensPerFill {
		b.tokens = b.maxTokens
	} else {
		b.tokens += n * b.tokensPerFill
	}
}

// take consumes one token if there is one. It also reports what the
// x-ratelimit headers need: the tokens left and the time to the next fill.
func (b *bucket) take(now time.Time) (ok bool, remaining uint64, reset time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens > 0 {
		b.tokens--
		ok = true
	}
	return ok, b.tokens, b.lastFill.Add(b.fillInterval).Sub(now)
}

// full reports whether the bucket is indistinguishable from a new one, so
// a per-connection bucket can be forgotten without changing behaviour.
func (b *bucket) full(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	return b.tokens == b.maxTokens
}
