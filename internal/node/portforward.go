package node

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
)

// The kubelet's port forwarding (kubectl port-forward), over SPDY as the
// API server speaks it to kubelets: the client opens a pair of streams per
// forwarded connection, "error" and "data", tied by a requestID and naming
// the port; the node connects the data stream to the port on the pod's
// address, as a kubelet connects to localhost in the pod's network.

const (
	portForwardProtocol = "portforward.k8s.io"
	// portForwardIdle closes a forwarding session nothing has used for
	// this long (the kubelet's default streaming idle timeout).
	portForwardIdle = 4 * time.Hour
	// pairTimeout drops a stream whose partner never came.
	pairTimeout = 30 * time.Second
)

// handlePortForward serves /portForward/<namespace>/<pod>.
func (a *Agent) handlePortForward(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("namespace"), r.PathValue("pod")
	addrs, ok := a.podAddrs(ns, name)
	if !ok {
		http.Error(w, fmt.Sprintf("pod %s/%s is not running on node %s", ns, name, a.opts.NodeName), http.StatusNotFound)
		return
	}
	if _, err := httpstream.Handshake(r, w, []string{portForwardProtocol}); err != nil {
		return // Handshake answered with the reason
	}
	streams := make(chan httpstream.Stream, 8)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, _ <-chan struct{}) error {
		streams <- s
		return nil
	})
	if conn == nil {
		return // UpgradeResponse answered with the reason
	}
	defer conn.Close()
	conn.SetIdleTimeout(portForwardIdle)

	type pair struct {
		data, errs httpstream.Stream
		created    time.Time
	}
	pending := map[string]*pair{}
	sweep := time.NewTicker(pairTimeout)
	defer sweep.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-conn.CloseChan():
			return
		case <-r.Context().Done():
			return
		case <-sweep.C:
			for id, p := range pending {
				if time.Since(p.created) > pairTimeout {
					conn.RemoveStreams(p.data, p.errs)
					delete(pending, id)
				}
			}
		case s := <-streams:
			id := s.Headers().Get(corev1.PortForwardRequestIDHeader)
			p := pending[id]
			if p == nil {
				p = &pair{created: time.Now()}
				pending[id] = p
			}
			switch s.Headers().Get(corev1.StreamType) {
			case corev1.StreamTypeData:
				p.data = s
			case corev1.StreamTypeError:
				p.errs = s
			default:
				s.Reset()
				continue
			}
			if p.data == nil || p.errs == nil {
				continue
			}
			delete(pending, id)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.RemoveStreams(p.data, p.errs)
				a.forwardPort(addrs, p.data, p.errs)
			}()
		}
	}
}

// forwardPort connects one data stream to the pod's port; a failure is
// reported on the error stream, as kubectl prints it.
func (a *Agent) forwardPort(addrs []netip.Addr, data, errs httpstream.Stream) {
	defer errs.Close()
	defer data.Close()
	port, err := strconv.ParseUint(data.Headers().Get(corev1.PortHeader), 10, 16)
	if err != nil || port == 0 {
		fmt.Fprintf(errs, "invalid port %q", data.Headers().Get(corev1.PortHeader))
		return
	}
	var upstream net.Conn
	for _, ip := range addrs {
		if upstream, err = net.DialTimeout("tcp", netip.AddrPortFrom(ip, uint16(port)).String(), 5*time.Second); err == nil {
			break
		}
	}
	if upstream == nil {
		fmt.Fprintf(errs, "error forwarding port %d to pod: %v", port, err)
		return
	}
	defer upstream.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(upstream, data)
		if cw, ok := upstream.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		close(done)
	}()
	io.Copy(data, upstream)
	data.Close()
	<-done
}

// podAddrs are where a running pod's ports are: its app's address first
// (where the app listens beside a sidecar), then the pod IP (the sidecar's
// own ports).
func (a *Agent) podAddrs(ns, name string) ([]netip.Addr, bool) {
	rp := a.runningPod(ns, name)
	if rp == nil {
		return nil, false
	}
	var out []netip.Addr
	if ip := rp.AppIP(); ip.IsValid() {
		out = append(out, ip)
	}
	if ip := rp.PodIP(); ip.IsValid() {
		out = append(out, ip)
	}
	return out, len(out) > 0
}
