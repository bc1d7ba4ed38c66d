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

// istio-init reads its settings from the environment too; flags win.
func TestIptablesEnvironment(t *testing.T) {
	t.Setenv("INBOUND_CAPTURE_PORT", "15999")
	t.Setenv("ISTIO_META_DNS_CAPTURE", "true")
	t.Setenv("ISTIO_SERVICE_CIDR", "10.96.0.0/12")
	t.Setenv("ISTIO_INBOUND_PORTS", "9080")
	root := NewRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"iptables", "--capture-all-dns", "-b", "9443", "--dry-run"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	got, _, _ := strings.Cut(out.String(), "# ip6tables-restore")
	for _, want := range []string{
		"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15999\n",
		"-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-ports 15053\n",
		"-A ISTIO_OUTPUT -d 10.96.0.0/12 -j ISTIO_REDIRECT\n",
		"-A ISTIO_INBOUND -p tcp --dport 9443 -j ISTIO_IN_REDIRECT\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("dry run lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "--dport 9080") {
		t.Errorf("-b 9443 should override ISTIO_INBOUND_PORTS=9080:\n%s", got)
	}
}
