package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skein-mesh/skein/internal/kubelet"
)

// The kubelet API the API server proxies `kubectl logs` and `kubectl
// port-forward` to (GET /containerLogs/<namespace>/<pod>/<container>,
// /portForward/<namespace>/<pod>), served over HTTPS on
// the node's address and the port the Node's daemonEndpoints announce.
// Like a kubelet with its defaults (anonymous auth, AlwaysAllow), it does
// not authenticate; it listens on loopback only, where the log files it
// reads are anyway.

// logFollowPoll is how often a followed log is checked for more lines.
const logFollowPoll = 200 * time.Millisecond

// listenKubeletAPI binds the kubelet API: addr's host must be the node's
// address (or empty); port 0 picks one.
func listenKubeletAPI(addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("kubelet address %q: %w", addr, err)
	}
	if host != "" && host != hostIP {
		return nil, fmt.Errorf("kubelet address %q: the node's address is %s, so the API server reaches the kubelet there", addr, hostIP)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(hostIP, port))
	if err != nil {
		return nil, fmt.Errorf("kubelet API: %w", err)
	}
	return l, nil
}

// serveKubeletAPI serves the kubelet API on l until ctx is done.
func (a *Agent) serveKubeletAPI(ctx context.Context, l net.Listener) {
	cert, err := selfSignedCert(a.opts.NodeName)
	if err != nil {
		a.log.Error("kubelet API: no serving certificate; kubectl logs will not work", "error", err)
		l.Close()
		return
	}
	srv := &http.Server{
		Handler:           a.kubeletHandler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("kubelet API stopped", "error", err)
	}
}

func (a *Agent) kubeletHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", a.handleContainerLogs)
	mux.HandleFunc("/portForward/{namespace}/{pod}", a.handlePortForward) // portforward.go
	return mux
}

// handleContainerLogs answers as the kubelet does: the container's output,
// optionally its last tailLines lines, at most limitBytes, and with follow
// everything written until the client goes or the pod stops.
func (a *Agent) handleContainerLogs(w http.ResponseWriter, r *http.Request) {
	ns, name, container := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	q := r.URL.Query()
	for _, p := range []string{"previous", "sinceSeconds", "sinceTime", "timestamps"} {
		if v := q.Get(p); v != "" && v != "false" {
			http.Error(w, fmt.Sprintf("%s is not supported by a skein node: its logs are the container's output, without per-line times or earlier instances", p), http.StatusBadRequest)
			return
		}
	}
	follow := q.Get("follow") == "true"
	tail, err := optionalInt(q.Get("tailLines"))
	if err != nil {
		http.Error(w, "tailLines: "+err.Error(), http.StatusBadRequest)
		return
	}
	limit, err := optionalInt(q.Get("limitBytes"))
	if err != nil {
		http.Error(w, "limitBytes: "+err.Error(), http.StatusBadRequest)
		return
	}
	if msg, code := a.checkContainer(ns, name, container); code != http.StatusOK {
		http.Error(w, msg, code)
		return
	}
	f, err := os.Open(filepath.Join(a.opts.DataDir, "logs", ns, name, container+".log"))
	if errors.Is(err, os.ErrNotExist) {
		// Scheduled but not started yet: nothing written so far.
		w.Header().Set("Content-Type", "text/plain")
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	if tail >= 0 {
		if err := seekToTail(f, tail); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	out := io.Writer(w)
	if limit >= 0 {
		out = &limitedWriter{w: w, left: limit}
	}
	flusher, _ := w.(http.Flusher)
	for {
		if _, err := io.Copy(out, f); err != nil {
			return // the client went, or limitBytes was reached
		}
		if !follow {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if !a.podRunning(ns, name) {
			io.Copy(out, f) // what it wrote while stopping
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(logFollowPoll):
		}
	}
}

// checkContainer finds the container in the node's pods, with the
// kubelet's kind of messages for what is not there.
func (a *Agent) checkContainer(ns, name, container string) (string, int) {
	if a.pods == nil {
		return "the node is starting", http.StatusServiceUnavailable
	}
	obj, ok, err := a.pods.GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return fmt.Sprintf("pod %s/%s is not on node %s", ns, name, a.opts.NodeName), http.StatusNotFound
	}
	pod, err := toPod(obj)
	if err != nil {
		return err.Error(), http.StatusInternalServerError
	}
	var names []string
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == container {
			return "", http.StatusOK
		}
		names = append(names, c.Name)
	}
	return fmt.Sprintf("container %s is not valid for pod %s (its containers: %v)", container, name, names), http.StatusBadRequest
}

// runningPod is the pod the agent still runs, nil if none.
func (a *Agent) runningPod(ns, name string) *kubelet.RunningPod {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.running[ns+"/"+name]
	if !ok || e.stopped {
		return nil
	}
	return e.rp
}

// podRunning reports whether the agent still runs the pod.
func (a *Agent) podRunning(ns, name string) bool { return a.runningPod(ns, name) != nil }

func optionalInt(s string) (int64, error) {
	if s == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", s)
	}
	return n, nil
}

// seekToTail positions f at the start of its last n lines (a last line
// without its newline counts).
func seekToTail(f *os.File, n int64) error {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil || n == 0 {
		return err
	}
	const chunk = 8 << 10
	buf := make([]byte, chunk)
	var seen int64 // newlines passed, not counting the file's last byte
	for end := size; end > 0; {
		start := max(end-chunk, 0)
		part := buf[:end-start]
		if _, err := f.ReadAt(part, start); err != nil {
			return err
		}
		for i := len(part) - 1; i >= 0; i-- {
			if part[i] != '\n' || start+int64(i) == size-1 {
				continue
			}
			if seen++; seen == n {
				_, err := f.Seek(start+int64(i)+1, io.SeekStart)
				return err
			}
		}
		end = start
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}

// limitedWriter stops (with an error) after left bytes.
type limitedWriter struct {
	w    io.Writer
	left int64
}

var errLimit = errors.New("limitBytes reached")

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errLimit
	}
	cut := p
	if int64(len(cut)) > l.left {
		cut = cut[:l.left]
	}
	n, err := l.w.Write(cut)
	l.left -= int64(n)
	if err == nil && len(cut) < len(p) {
		err = errLimit
	}
	return n, err
}

// selfSignedCert is the kubelet API's serving certificate. The API server
// does not verify it unless given a kubelet CA, as with a kubelet's own
// self-signed certificate.
func selfSignedCert(nodeName string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeName + "@" + strconv.FormatInt(time.Now().Unix(), 10)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{nodeName},
		IPAddresses:  []net.IP{net.ParseIP(hostIP)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
