package kubelet

import "testing"

func TestExpandVars(t *testing.T) {
	vars := []EnvVar{{"POD_IP", "127.1.0.1"}, {"PORT", "9080"}, {"EMPTY", ""}, {"PORT", "9090"}}
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"$(POD_IP)", "127.1.0.1"},
		{"--listen=$(POD_IP):$(PORT)", "--listen=127.1.0.1:9090"}, // later definition wins
		{"$(EMPTY)x", "x"},
		{"$(UNDEFINED)", "$(UNDEFINED)"},
		{"$$(POD_IP)", "$(POD_IP)"},
		{"$$$(POD_IP)", "$127.1.0.1"},
		{"cost: $$5", "cost: $5"},
		{"$HOME", "$HOME"},
		{"end$", "end$"},
		{"$(POD_IP", "$(POD_IP"},
		{"a $(POD_IP) b $(", "a 127.1.0.1 b $("},
		{"$()", "$()"},
		{"$(PORT)$(PORT)", "90909090"},
	}
	for _, tt := range tests {
		if got := ExpandVars(tt.in, EnvLookup(vars)); got != tt.want {
			t.Errorf("ExpandVars(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
