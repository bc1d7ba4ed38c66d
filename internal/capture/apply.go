package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
)

func (f Family) save() string    { return f.String() + "-save" }
func (f Family) restore() string { return f.String() + "-restore" }

// Apply installs each ruleset in the current network namespace, replacing
// the Istio rules a previous run left (so a re-run is idempotent). Each
// family is one iptables-restore call.
func Apply(ctx context.Context, log *slog.Logger, sets []Ruleset) error {
	for _, rs := range sets {
		if rs.Family == IPv6 {
			// The IPv6 inbound passthrough source must exist to be bound:
			// IPv4 has all of 127/8 on lo, IPv6 only ::1.
			if err := addLoopbackAddress(ctx, InboundPassthroughIPv6+"/128"); err != nil {
				return err
			}
		}
		if err := replace(ctx, log, rs); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup removes every ISTIO_* chain and the jumps into them, for IPv4 and
// (when the kernel has IPv6 and ip6tables is installed) IPv6.
func Cleanup(ctx context.Context, log *slog.Logger) error {
	var errs []error
	for _, f := range []Family{IPv4, IPv6} {
		if f == IPv6 && !ipv6Available() {
			continue
		}
		errs = append(errs, replace(ctx, log, Ruleset{Family: f}))
	}
	return errors.Join(errs...)
}

func replace(ctx context.Context, log *slog.Logger, rs Ruleset) error {
	saved, err := run(ctx, rs.Family.save(), "")
	if err != nil {
		return err
	}
	input := RestoreInput(saved, rs)
	if input == "" {
		log.Info("no Istio rules to change", "family", rs.Family.String())
		return nil
	}
	log.Info("applying", "command", rs.Family.restore()+" --noflush", "input", input)
	// --wait: legacy iptables holds one host-wide lock, which pods being
	// set up in parallel share.
	if _, err := run(ctx, rs.Family.restore(), input, "--noflush", "--wait"); err != nil {
		return fmt.Errorf("%w\ninput:\n%s", err, input)
	}
	return nil
}

func addLoopbackAddress(ctx context.Context, cidr string) error {
	_, err := run(ctx, "ip", "", "-6", "addr", "add", cidr, "dev", "lo")
	// A re-run finds it there (iproute2 says so in one of two ways).
	if err != nil && (strings.Contains(err.Error(), "File exists") || strings.Contains(err.Error(), "already assigned")) {
		return nil
	}
	return err
}

func run(ctx context.Context, name, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func ipv6Available() bool {
	if _, err := os.Stat("/proc/net/if_inet6"); err != nil {
		return false
	}
	_, err := exec.LookPath(IPv6.save())
	return err == nil
}
