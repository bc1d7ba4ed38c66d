package model

import "sync"

// Later layers derive state from a push that they build lazily and share
// between proxies: translation's proxy-independent resources, the ADS
// server's marshalled resources. That state lives in the push context it
// was derived from, so it is dropped with it and can never be served for
// another push: the push context's identity covers every config and
// registry input, and each layer's own key covers what it reads about a
// proxy.

// MemoKey names one kind of state derived from a push, of type T. Each is
// a package-level variable of the layer that owns the state.
type MemoKey[T any] struct{ name string }

// NewMemoKey returns a key; name is for debugging only.
func NewMemoKey[T any](name string) *MemoKey[T] { return &MemoKey[T]{name: name} }

func (k *MemoKey[T]) String() string { return k.name }

type memoEntry struct {
	once sync.Once
	val  any
}

// Memo returns pc's value for key, built by build on first use. Concurrent
// first uses wait for one build.
func Memo[T any](pc *PushContext, key *MemoKey[T], build func() *T) *T {
	v, ok := pc.memos.Load(key)
	if !ok {
		v, _ = pc.memos.LoadOrStore(key, &memoEntry{})
	}
	e := v.(*memoEntry)
	e.once.Do(func() { e.val = build() })
	return e.val.(*T)
}
