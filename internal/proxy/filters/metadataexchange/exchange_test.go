package metadataexchange

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

func node(t *testing.T, workload string) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(map[string]any{"WORKLOAD_NAME": workload, "NAMESPACE": "ns", "LABELS": map[string]any{"app": workload}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func exchanger(t *testing.T, workload, id string) *Exchanger {
	t.Helper()
	e, err := New(node(t, workload), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestExchangeBothWays: the client announces itself, the server answers,
// each learns the other, and the application's bytes follow unchanged in
// both directions.
func TestExchangeBothWays(t *testing.T) {
	clientSide, serverSide := net.Pipe()
	defer clientSide.Close()
	defer serverSide.Close()
	client, server := exchanger(t, "productpage-v1", "sidecar~a"), exchanger(t, "ratings-v1", "sidecar~b")

	type result struct {
		conn net.Conn
		peer *Peer
		err  error
	}
	accepted := make(chan result, 1)
	go func() {
		c, p, err := server.Accept(serverSide, time.Second)
		accepted <- result{c, p, err}
	}()
	up, serverPeer, err := client.Connect(clientSide, time.Second)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	acc := <-accepted
	if acc.err != nil {
		t.Fatalf("Accept: %v", acc.err)
	}
	if got := serverPeer.Metadata.GetFields()["WORKLOAD_NAME"].GetStringValue(); got != "ratings-v1" || serverPeer.ID != "sidecar~b" {
		t.Errorf("client saw server %q id %q", got, serverPeer.ID)
	}
	if got := acc.peer.Metadata.GetFields()["WORKLOAD_NAME"].GetStringValue(); got != "productpage-v1" || acc.peer.ID != "sidecar~a" {
		t.Errorf("server saw client %q id %q", got, acc.peer.ID)
	}
	if got := acc.peer.Metadata.GetFields()["LABELS"].GetStructValue().GetFields()["app"].GetStringValue(); got != "productpage-v1" {
		t.Errorf("server saw client labels app=%q", got)
	}

	go func() {
		up.Write([]byte("ping"))
		acc.conn.Write([]byte("pong"))
	}()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(acc.conn, buf); err != nil || string(buf) != "ping" {
		t.Errorf("server read %q, %v", buf, err)
	}
	if _, err := io.ReadFull(up, buf); err != nil || string(buf) != "pong" {
		t.Errorf("client read %q, %v", buf, err)
	}
}

// TestAcceptWithoutFrame: a client that speaks the application protocol
// at once gets no answer, and none of its bytes are lost.
func TestAcceptWithoutFrame(t *testing.T) {
	clientSide, serverSide := net.Pipe()
	defer clientSide.Close()
	defer serverSide.Close()
	go clientSide.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	conn, peer, err := exchanger(t, "server", "s").Accept(serverSide, time.Second)
	if err != nil || peer != nil {
		t.Fatalf("Accept = %v, %v; want no peer and no error", peer, err)
	}
	buf := make([]byte, len("GET / HTTP/1.1\r\n\r\n"))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "GET / HTTP/1.1\r\n\r\n" {
		t.Errorf("read %q, %v", buf, err)
	}
}

// TestAcceptShortMessage: a client that sends fewer bytes than a frame
// header and waits for the answer is served at once, not after the
// timeout.
func TestAcceptShortMessage(t *testing.T) {
	clientSide, serverSide := net.Pipe()
	defer clientSide.Close()
	defer serverSide.Close()
	go clientSide.Write([]byte("hi\n"))
	start := time.Now()
	conn, peer, err := exchanger(t, "server", "s").Accept(serverSide, 5*time.Second)
	if err != nil || peer != nil {
		t.Fatalf("Accept = %v, %v; want no peer and no error", peer, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Accept took %s for a 3-byte message; want no wait for a full header", d)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hi\n" {
		t.Errorf("read %q, %v", buf, err)
	}
}

// TestConnectServerSpeaksFirst: a server that answers with application
// bytes instead of a frame (no exchange there) keeps them, and a silent
// one costs at most the timeout.
func TestConnectServerSpeaksFirst(t *testing.T) {
	clientSide, serverSide := net.Pipe()
	defer clientSide.Close()
	defer serverSide.Close()
	c := exchanger(t, "c", "c")
	go func() {
		io.ReadFull(serverSide, make([]byte, len(c.frame)))
		serverSide.Write([]byte("220 smtp ready\r\n"))
	}()
	conn, peer, err := c.Connect(clientSide, time.Second)
	if err != nil || peer != nil {
		t.Fatalf("Connect = %v, %v; want no peer and no error", peer, err)
	}
	buf := make([]byte, len("220 smtp ready\r\n"))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "220 smtp ready\r\n" {
		t.Errorf("read %q, %v", buf, err)
	}

	silentClient, silentServer := net.Pipe()
	defer silentClient.Close()
	defer silentServer.Close()
	go io.Copy(io.Discard, silentServer)
	start := time.Now()
	if _, peer, err := exchanger(t, "c", "c").Connect(silentClient, 100*time.Millisecond); err != nil || peer != nil {
		t.Errorf("silent server: %v, %v", peer, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("silent server took %s, want about the 100ms timeout", d)
	}
}

// TestMalformedFrames: a frame that starts right but is not valid cannot
// be skipped; it is an error naming what is wrong.
func TestMalformedFrames(t *testing.T) {
	header := func(size uint32) []byte {
		b := make([]byte, headerSize)
		binary.BigEndian.PutUint32(b[0:4], magic)
		binary.BigEndian.PutUint32(b[4:8], size)
		return b
	}
	notStruct, _ := anypb.New(structpb.NewStringValue("x"))
	notStructBytes, _ := proto.Marshal(notStruct)
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"too large", "exceeds", header(maxPayload + 1)},
		{"truncated", "reading the frame", append(header(100), 1, 2, 3)},
		{"not an Any", "metadata exchange", append(header(3), 0xff, 0xff, 0xff)},
		{"not a Struct", "payload type.googleapis.com/google.protobuf.Value", append(header(uint32(len(notStructBytes))), notStructBytes...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clientSide, serverSide := net.Pipe()
			defer serverSide.Close()
			go func() {
				clientSide.Write(tc.data)
				clientSide.Close()
			}()
			_, _, err := exchanger(t, "s", "s").Accept(serverSide, time.Second)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestFrameLayout pins the wire format Envoy's Istio filter reads: magic
// and length big-endian, then an Any of a Struct with the two keys.
func TestFrameLayout(t *testing.T) {
	e := exchanger(t, "w", "node-id")
	if got := binary.BigEndian.Uint32(e.frame[0:4]); got != 0x3D230467 {
		t.Fatalf("magic %#x", got)
	}
	if got := binary.BigEndian.Uint32(e.frame[4:8]); int(got) != len(e.frame)-8 {
		t.Fatalf("length %d, payload is %d bytes", got, len(e.frame)-8)
	}
	var a anypb.Any
	if err := proto.Unmarshal(e.frame[8:], &a); err != nil {
		t.Fatal(err)
	}
	if a.GetTypeUrl() != "type.googleapis.com/google.protobuf.Struct" {
		t.Errorf("type url %q", a.GetTypeUrl())
	}
	var s structpb.Struct
	if err := a.UnmarshalTo(&s); err != nil {
		t.Fatal(err)
	}
	if s.GetFields()["x-envoy-peer-metadata-id"].GetStringValue() != "node-id" ||
		s.GetFields()["x-envoy-peer-metadata"].GetStructValue().GetFields()["WORKLOAD_NAME"].GetStringValue() != "w" {
		t.Errorf("payload %v", &s)
	}
	if p, err := readFrame(newBufferedConn(&readOnlyConn{r: bytes.NewReader(e.frame)}).r); err != nil || p.ID != "node-id" {
		t.Errorf("readFrame = %v, %v", p, err)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		config  map[string]any
		wantErr string
	}{
		{"istio's", map[string]any{"protocol": "istio-peer-exchange"}, ""},
		{"discovery off", map[string]any{"protocol": "istio-peer-exchange", "enable_discovery": false}, ""},
		{"no protocol", map[string]any{}, "protocol is required"},
		{"other protocol", map[string]any{"protocol": "h2"}, `protocol "h2" is not supported`},
		{"discovery on", map[string]any{"protocol": "istio-peer-exchange", "enable_discovery": true}, "enable_discovery is not supported"},
		{"additional labels", map[string]any{"protocol": "istio-peer-exchange", "additional_labels": []any{"role"}}, "additional_labels is not supported"},
		{"unknown", map[string]any{"protocol": "istio-peer-exchange", "mode": "x"}, `unknown field "mode"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := structpb.NewStruct(tc.config)
			if err != nil {
				t.Fatal(err)
			}
			err = ParseConfig(v)
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseConfig = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// readOnlyConn is a net.Conn over a reader, for decoding a frame.
type readOnlyConn struct {
	net.Conn
	r io.Reader
}

func (c *readOnlyConn) Read(p []byte) (int, error) { return c.r.Read(p) }
