package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The istio-init command line, parsed by the real command tree,
// prints the IPv4 rules the capture golden holds.
func TestIptablesDryRunIstioInit(t *testing.T) {
	root := NewRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
		"-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020", "--dry-run"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "capture", "testdata", "istio-init.golden"))
	if err != nil {
		t.Fatal(err)
	}
	// The host may have IPv6: compare the IPv4 part.
	got, _, _ := strings.Cut(out.String(), "# ip6tables-restore")
	wantV4, _, _ := strings.Cut(string(want), "# ip6tables-restore")
	if got != wantV4 {
		t.Errorf("skein iptables --dry-run:\n%s\nwant:\n%s", got, wantV4)
	}
}

func TestIptablesRejectsTPROXY(t *testing.T) {
	root := NewRootCmd()
	root.SetOut(&bytes.Buffer{})
	root.SetArgs([]string{"iptables", "-m", "TPROXY", "--dry-run"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "TPROXY is not supported yet") {
		t.Fatalf("err = %v, want TPROXY not supported", err)
	}
}
