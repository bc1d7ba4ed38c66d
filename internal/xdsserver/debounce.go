package xdsserver

import (
	"context"
	"fmt"
	"time"
)

// Config changes come in bursts (kubectl apply -f dir, a rollout), and
// every push rebuilds every proxy's config, so pushes are debounced as in
// Istio's istiod: a push waits for After of quiet, but never more than Max
// after the first change of the burst.

// Istio's defaults for PILOT_DEBOUNCE_AFTER and PILOT_DEBOUNCE_MAX.
const (
	DefaultDebounceAfter = 100 * time.Millisecond
	DefaultDebounceMax   = 10 * time.Second
)

// Debounce is when a push follows a burst of config changes.
type Debounce struct {
	After time.Duration // quiet time after a change before pushing
	Max   time.Duration // longest a push waits while changes keep coming
}

// DebounceFromEnv reads Istio's PILOT_DEBOUNCE_AFTER and PILOT_DEBOUNCE_MAX
// (Go durations such as 100ms or 10s) through getenv, with Istio's defaults
// for unset ones.
func DebounceFromEnv(getenv func(string) string) (Debounce, error) {
	d := Debounce{After: DefaultDebounceAfter, Max: DefaultDebounceMax}
	for _, v := range []struct {
		name string
		dst  *time.Duration
	}{{"PILOT_DEBOUNCE_AFTER", &d.After}, {"PILOT_DEBOUNCE_MAX", &d.Max}} {
		s := getenv(v.name)
		if s == "" {
			continue
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			return Debounce{}, fmt.Errorf("environment variable %s=%q: not a duration (e.g. 100ms, 10s): %w", v.name, s, err)
		}
		if dur <= 0 {
			return Debounce{}, fmt.Errorf("environment variable %s=%q: must be positive", v.name, s)
		}
		*v.dst = dur
	}
	if d.Max < d.After {
		return Debounce{}, fmt.Errorf("environment variables PILOT_DEBOUNCE_MAX (%s) must not be less than PILOT_DEBOUNCE_AFTER (%s)", d.Max, d.After)
	}
	return d, nil
}

// Run calls push once per burst of changes, with the time of the burst's
// first change (from which proxy convergence is measured), until ctx is
// done. push runs on Run's goroutine: changes during a push start the next
// burst.
func (d Debounce) Run(ctx context.Context, changes <-chan struct{}, push func(changed time.Time)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		}
		changed := time.Now()
		deadline := time.NewTimer(d.Max)
		quiet := time.NewTimer(d.After)
	wait:
		for {
			select {
			case <-ctx.Done():
				deadline.Stop()
				quiet.Stop()
				return
			case <-changes:
				quiet.Reset(d.After)
			case <-quiet.C:
				break wait
			case <-deadline.C:
				break wait
			}
		}
		deadline.Stop()
		quiet.Stop()
		push(changed)
	}
}
