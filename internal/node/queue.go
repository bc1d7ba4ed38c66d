package node

import (
	"context"
	"sync"
	"time"
)

// queue is a set of pod keys to sync, each at most once in the queue, so a
// burst of events for one pod costs one sync.
type queue struct {
	mu     sync.Mutex
	keys   []string
	queued map[string]bool
	signal chan struct{}
}

func newQueue() *queue {
	return &queue{queued: map[string]bool{}, signal: make(chan struct{}, 1)}
}

func (q *queue) add(key string) {
	q.mu.Lock()
	if !q.queued[key] {
		q.queued[key] = true
		q.keys = append(q.keys, key)
	}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *queue) addAfter(key string, d time.Duration) {
	time.AfterFunc(d, func() { q.add(key) })
}

// get returns the next key, waiting for one; false once ctx is done.
func (q *queue) get(ctx context.Context) (string, bool) {
	for {
		q.mu.Lock()
		if len(q.keys) > 0 {
			key := q.keys[0]
			q.keys = q.keys[1:]
			delete(q.queued, key)
			q.mu.Unlock()
			return key, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", false
		case <-q.signal:
		}
	}
}
