package discovery

import (
	"strings"
	"testing"
	"time"
)

// TestDebounceOptions: flags win over Istio's environment variables, which
// fill in unset settings, and a bad value is an error naming the variable.
func TestDebounceOptions(t *testing.T) {
	env := map[string]string{"PILOT_DEBOUNCE_AFTER": "20ms", "PILOT_DEBOUNCE_MAX": "3s"}
	o := Options{MaxDebounce: time.Second}
	if err := o.debounce(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if o.Debounce != 20*time.Millisecond || o.MaxDebounce != time.Second {
		t.Errorf("got after %v max %v, want 20ms (env) and 1s (flag)", o.Debounce, o.MaxDebounce)
	}
	env["PILOT_DEBOUNCE_AFTER"] = "fast"
	o = Options{}
	if err := o.debounce(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "PILOT_DEBOUNCE_AFTER") {
		t.Errorf("err = %v, want one naming PILOT_DEBOUNCE_AFTER", err)
	}
}
