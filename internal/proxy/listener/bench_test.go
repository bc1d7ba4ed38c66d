package listener

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// BenchmarkForwardHTTP1 sends keep-alive HTTP/1.1 requests through one
// listener (connection manager + router) to a loopback upstream answering
// 1 KB, as the data-plane benchmark's one-proxy path does. allocs/op counts
// the client and upstream too; compare it before and after a change.
func BenchmarkForwardHTTP1(b *testing.B) {
	const podIP = "127.77.9.1"
	body := bytes.Repeat([]byte("x"), 1024)
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})}
	ln, err := net.Listen("tcp", "127.77.9.2:0")
	if err != nil {
		b.Fatal(err)
	}
	go up.Serve(ln)
	defer up.Close()

	port := freePort(b, podIP)
	m := newManager(b, podIP, staticClusters(b, "c", ln.Addr().String()))
	if err := m.Update(map[string]*listenerv3.Listener{"l": httpListener(b, "l", "0.0.0.0", port, inlineHCM("c"))}); err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) { benchGet(b, "http://"+ln.Addr().String()+"/bench", len(body)) })
	b.Run("proxied", func(b *testing.B) {
		benchGet(b, fmt.Sprintf("http://%s/bench", net.JoinHostPort(podIP, fmt.Sprint(port))), len(body))
	})
}

// benchGet measures keep-alive GETs of url answering size bytes.
func benchGet(b *testing.B, url string, size int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	get := func() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != int64(size) {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
	get()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		get()
	}
}
