package capture

import (
	"bufio"
	"slices"
	"strings"
)

// savedTable is what iptables-save shows of this package's rules in one
// table: the ISTIO_* chains and the rules elsewhere that jump into them.
type savedTable struct {
	chains []string
	jumps  []string // "OUTPUT -p tcp -j ISTIO_OUTPUT": a rule spec without "-A "
}

// parseSave reads iptables-save output.
func parseSave(saved string) map[string]*savedTable {
	out := map[string]*savedTable{}
	var cur *savedTable
	sc := bufio.NewScanner(strings.NewReader(saved))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "*"):
			cur = &savedTable{}
			out[line[1:]] = cur
		case cur == nil:
		case strings.HasPrefix(line, ":"):
			if name, _, _ := strings.Cut(line[1:], " "); strings.HasPrefix(name, chainPrefix) {
				cur.chains = append(cur.chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			spec := line[3:]
			chain, _, _ := strings.Cut(spec, " ")
			if !strings.HasPrefix(chain, chainPrefix) && jumpsToOurs(spec) {
				cur.jumps = append(cur.jumps, spec)
			}
		}
	}
	return out
}

func jumpsToOurs(spec string) bool {
	f := strings.Fields(spec)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && strings.HasPrefix(f[i+1], chainPrefix) {
			return true
		}
	}
	return false
}

// RestoreInput returns input for `iptables-restore --noflush` that replaces
// every ISTIO_* chain, and every jump into one, that saved (the output of
// iptables-save; empty when unknown, as in a dry run) shows with rs. Other
// rules stay untouched. An empty rs removes our rules: the cleanup.
//
// Declaring a chain (":NAME - [0:0]") creates it or flushes it, so a
// re-run never duplicates a rule; the restore of each table is one
// transaction, so the pod is never half captured.
func RestoreInput(saved string, rs Ruleset) string {
	old := parseSave(saved)
	var b strings.Builder
	for _, table := range tables(old, rs) {
		want := rs.Chains[table]
		var was savedTable
		if t := old[table]; t != nil {
			was = *t
		}
		if len(want) == 0 && len(was.chains) == 0 && len(was.jumps) == 0 {
			continue
		}
		b.WriteString("*" + table + "\n")
		for _, c := range want {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, c := range was.chains {
			if !slices.Contains(want, c) {
				b.WriteString(":" + c + " - [0:0]\n")
			}
		}
		for _, j := range was.jumps {
			b.WriteString("-D " + j + "\n")
		}
		for _, c := range was.chains {
			if !slices.Contains(want, c) {
				b.WriteString("-X " + c + "\n")
			}
		}
		for _, r := range rs.Rules {
			if r.Table == table {
				b.WriteString(r.String() + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// tables lists the tables either side names, in tableOrder, then others.
func tables(old map[string]*savedTable, rs Ruleset) []string {
	seen := map[string]bool{}
	for t := range old {
		seen[t] = true
	}
	for t := range rs.Chains {
		seen[t] = true
	}
	var out []string
	for _, t := range tableOrder {
		if seen[t] {
			out = append(out, t)
			delete(seen, t)
		}
	}
	var rest []string
	for t := range seen {
		rest = append(rest, t)
	}
	slices.Sort(rest)
	return append(out, rest...)
}
