package capture

import (
	"bufio"
	"net"
	"os"
	"strings"
)

// Nameservers returns the nameserver addresses of a resolv.conf file (the
// resolvers DNS capture redirects when it does not capture all port 53).
func Nameservers(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" && net.ParseIP(fields[1]) != nil {
			out = append(out, fields[1])
		}
	}
	return out, sc.Err()
}

// HasGlobalIPv6 reports whether an interface of the current network
// namespace has an IPv6 address that is neither loopback nor link-local:
// then the pod speaks IPv6 and needs the ip6tables rules too (Istio's test).
func HasGlobalIPv6() bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.To4() != nil {
			continue
		}
		if !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() && !n.IP.IsLinkLocalMulticast() {
			return true
		}
	}
	return false
}
