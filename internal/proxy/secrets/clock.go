package secrets

import "time"

// Clock is the time source of rotation and retries; tests substitute one
// they advance by hand.
type Clock interface {
	Now() time.Time
	// After delivers once d has passed (at once for d <= 0).
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// After is time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
