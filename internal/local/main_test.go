package local

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"testing"
	"time"
)

// helperEnv switches the test binary into a minimal app the controller
// tests run as a pod's container, so they run real processes without
// depending on anything installed on the machine.
const helperEnv = "SKEIN_LOCAL_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		runHelper(mode)
		return
	}
	code := m.Run()
	if builtSkeinDir != "" {
		os.RemoveAll(builtSkeinDir)
	}
	os.Exit(code)
}

func runHelper(mode string) {
	if mode != "listen" {
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		os.Exit(2)
	}
	// A minimal app: serves HTTP on $SKEIN_APP_IP:$PORT like Bookinfo.
	ln, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("SKEIN_APP_IP"), os.Getenv("PORT")))
	if err != nil {
		fmt.Println("helper:", err)
		os.Exit(1)
	}
	fmt.Println("helper: listening on", ln.Addr(), "as", os.Getenv("POD_NAME"), "version", os.Getenv("VERSION"))
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, os.Getenv("POD_NAME"))
	}))
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	return a
}

// tcpOpen reports whether ip:port accepts a connection within timeout.
func tcpOpen(ctx context.Context, ip netip.Addr, port int, timeout time.Duration) bool {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func noConfigMaps(string, string) (map[string]string, bool, error) { return nil, false, nil }
