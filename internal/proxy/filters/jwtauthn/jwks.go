package jwtauthn

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// parseJWKS decodes a JSON Web Key Set; a set with no usable key is an
// error, as Envoy treats it.
func parseJWKS(data []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("invalid JWKS: %v", err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("JWKS has no keys")
	}
	return &set, nil
}

// keySource yields a provider's current key set.
type keySource interface {
	// keys returns the key set; refresh asks for a fetch now (an unknown
	// kid after key rotation), which a remote source rate-limits.
	keys(ctx context.Context, refresh bool) (*jose.JSONWebKeySet, error)
}

type staticKeys struct{ set *jose.JSONWebKeySet }

func (s staticKeys) keys(context.Context, bool) (*jose.JSONWebKeySet, error) { return s.set, nil }

// remoteKeys fetches a jwks_uri with a plain HTTP client and caches the
// set for cacheDuration. Concurrent requests share one fetch.
type remoteKeys struct {
	uri           string
	timeout       time.Duration
	cacheDuration time.Duration
	// minRefetch bounds refetches forced by unknown kids, so a flood of
	// forged tokens cannot turn into a flood of fetches.
	minRefetch time.Duration
	client     *http.Client
	now        func() time.Time
	log        *slog.Logger

	mu      sync.Mutex
	set     *jose.JSONWebKeySet
	fetched time.Time
	tried   time.Time
}

func (r *remoteKeys) keys(ctx context.Context, refresh bool) (*jose.JSONWebKeySet, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	fresh := r.set != nil && now.Sub(r.fetched) < r.cacheDuration
	if fresh && (!refresh || now.Sub(r.tried) < r.minRefetch) {
		return r.set, nil
	}
	if !fresh && r.set == nil && !r.tried.IsZero() && now.Sub(r.tried) < r.minRefetch {
		return nil, fmt.Errorf("jwks %s: recent fetch failed", r.uri)
	}
	r.tried = now
	set, err := r.fetch(ctx)
	if err != nil {
		r.log.Warn("jwt_authn: fetching JWKS failed", "uri", r.uri, "error", err)
		if r.set != nil {
			return r.set, nil // keep serving the last good set
		}
		return nil, err
	}
	r.set, r.fetched = set, now
	return set, nil
}

func (r *remoteKeys) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.uri, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks %s: status %d", r.uri, resp.StatusCode)
	}
	return parseJWKS(body)
}
