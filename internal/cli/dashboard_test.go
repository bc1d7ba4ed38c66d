package cli

import "testing"

func TestDashboardListenAddr(t *testing.T) {
	for _, tc := range []struct{ addr, appIP, want string }{
		{"127.0.0.1:20001", "127.3.0.9", "127.0.0.1:20001"}, // an explicit host wins
		{":20001", "", ":20001"},                            // a Kubernetes pod: all interfaces
		{":20001", "127.3.0.9", "127.3.0.9:20001"},          // a skein runner's pod: its app IP
		{"[::1]:20001", "127.3.0.9", "[::1]:20001"},
	} {
		t.Setenv("SKEIN_APP_IP", tc.appIP)
		if got := listenAddr(tc.addr); got != tc.want {
			t.Errorf("listenAddr(%q) with SKEIN_APP_IP=%q = %q, want %q", tc.addr, tc.appIP, got, tc.want)
		}
	}
}
