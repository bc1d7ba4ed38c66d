package xdsserver

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestDebounceFromEnv(t *testing.T) {
	cases := []struct {
		env     map[string]string
		want    Debounce
		wantErr string
	}{
		{env: nil, want: Debounce{After: 100 * time.Millisecond, Max: 10 * time.Second}},
		{env: map[string]string{"PILOT_DEBOUNCE_AFTER": "5ms", "PILOT_DEBOUNCE_MAX": "1s"}, want: Debounce{After: 5 * time.Millisecond, Max: time.Second}},
		{env: map[string]string{"PILOT_DEBOUNCE_AFTER": "100"}, wantErr: "PILOT_DEBOUNCE_AFTER"},
		{env: map[string]string{"PILOT_DEBOUNCE_MAX": "soon"}, wantErr: "PILOT_DEBOUNCE_MAX"},
		{env: map[string]string{"PILOT_DEBOUNCE_MAX": "-1s"}, wantErr: "PILOT_DEBOUNCE_MAX"},
		{env: map[string]string{"PILOT_DEBOUNCE_AFTER": "2s", "PILOT_DEBOUNCE_MAX": "1s"}, wantErr: "must not be less than"},
	}
	for _, tc := range cases {
		got, err := DebounceFromEnv(func(k string) string { return tc.env[k] })
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err = %v, want one naming %s", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: got %+v, %v; want %+v", tc.env, got, err, tc.want)
		}
	}
}

// TestDebounceRun runs the debouncer on synctest's fake clock: a burst is
// pushed once, After after its last change, and a burst that never goes
// quiet is pushed at Max after its first change.
func TestDebounceRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		d := Debounce{After: 100 * time.Millisecond, Max: time.Second}
		changes := make(chan struct{}, 1)
		type push struct{ changed, at time.Time }
		var mu sync.Mutex
		var all []push
		go d.Run(ctx, changes, func(changed time.Time) {
			mu.Lock()
			all = append(all, push{changed, time.Now()})
			mu.Unlock()
		})
		got := func() []push {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(all)
		}

		start := time.Now()
		for range 3 { // a burst: three changes 50ms apart
			changes <- struct{}{}
			time.Sleep(50 * time.Millisecond)
		}
		synctest.Wait()
		if pushes := got(); len(pushes) != 0 {
			t.Fatalf("pushed %d times during the burst", len(pushes))
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if pushes := got(); len(pushes) != 1 || pushes[0].at.Sub(start) != 200*time.Millisecond || !pushes[0].changed.Equal(start) {
			t.Fatalf("pushes = %v, want one at +200ms for the change at +0", pushes)
		}

		// Changes every 60ms never give 100ms of quiet: Max bounds the wait.
		start = time.Now()
		for range 30 {
			changes <- struct{}{}
			time.Sleep(60 * time.Millisecond)
		}
		synctest.Wait()
		pushes := got()
		if len(pushes) < 2 {
			t.Fatalf("pushes = %v, want a second push while changes keep coming", pushes)
		}
		if pushes[1].at.Sub(start) != time.Second {
			t.Fatalf("second push at %v after the burst began, want Max (1s)", pushes[1].at.Sub(start))
		}
	})
}
