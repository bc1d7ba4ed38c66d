// Package metadataexchange is Istio's TCP metadata exchange: the
// istio.metadata_exchange network filter on a sidecar's inbound TCP chains
// and the upstream filter of the same name on its outbound TCP clusters.
//
// When mesh mTLS negotiates the ALPN protocol "istio-peer-exchange", the
// client proxy first writes one frame holding its node metadata, the server
// proxy reads it and answers with its own frame, and only then do the
// application's bytes flow. Each side thereby learns the other workload
// (name, namespace, labels, cluster) that Istio's TCP metrics label with;
// HTTP does the same in headers (see istiostats).
//
// A frame is an 8-byte header, a magic number and the payload length (both
// big-endian uint32), then a serialized google.protobuf.Any holding a
// google.protobuf.Struct with the keys "x-envoy-peer-metadata" (the node
// metadata) and "x-envoy-peer-metadata-id" (the node id), as Envoy's Istio
// filter writes it, so Skein and Envoy sidecars understand each other.
package metadataexchange

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
)

// Name, TypeURL and Protocol identify the filter as Istio emits it (a
// TypedStruct: the config proto is not part of Envoy's API).
const (
	Name     = "istio.metadata_exchange"
	TypeURL  = "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange"
	Protocol = "istio-peer-exchange"
)

const (
	magic      = 0x3D230467
	headerSize = 8
	// maxPayload bounds what a peer can make the proxy buffer; node
	// metadata is a few hundred bytes.
	maxPayload = 64 << 10

	keyMetadata = "x-envoy-peer-metadata"
	keyID       = "x-envoy-peer-metadata-id"
)

// Peer is what the proxy at the other end sent.
type Peer struct {
	Metadata *structpb.Struct
	ID       string
}

// Is reports whether a network or cluster filter's typed_config is this
// filter's (a TypedStruct of TypeURL), checking it when it is.
func Is(config *anypb.Any) (bool, error) {
	typeURL, value, ok := filters.ReadTypedStruct(config)
	if !ok || typeURL != TypeURL {
		return false, nil
	}
	if err := ParseConfig(value); err != nil {
		return true, fmt.Errorf("%s: %v", Name, err)
	}
	return true, nil
}

// ParseConfig checks the filter's config (the TypedStruct's value). Only
// the exchange protocol is understood; anything else is refused rather
// than silently ignored.
func ParseConfig(v *structpb.Struct) error {
	for k, f := range v.GetFields() {
		switch k {
		case "protocol":
			if p := f.GetStringValue(); p != Protocol {
				return fmt.Errorf("protocol %q is not supported (only %q is)", p, Protocol)
			}
		case "enable_discovery":
			if f.GetBoolValue() {
				return errors.New("enable_discovery is not supported: peers are known only from the exchange")
			}
		case "additional_labels":
			if len(f.GetListValue().GetValues()) > 0 {
				return errors.New("additional_labels is not supported")
			}
		default:
			return fmt.Errorf("unknown field %q", k)
		}
	}
	if v.GetFields()["protocol"] == nil {
		return errors.New("protocol is required")
	}
	return nil
}

// Exchanger runs the exchange for one proxy: it holds the proxy's own
// frame, encoded once.
type Exchanger struct {
	frame []byte
}

// New returns an Exchanger announcing the node metadata self (nil: an
// empty one) under id.
func New(self *structpb.Struct, id string) (*Exchanger, error) {
	if self == nil {
		self = &structpb.Struct{}
	}
	payload := &structpb.Struct{Fields: map[string]*structpb.Value{
		keyMetadata: structpb.NewStructValue(self),
		keyID:       structpb.NewStringValue(id),
	}}
	a, err := anypb.New(payload)
	if err != nil {
		return nil, err
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		return nil, err
	}
	if len(body) > maxPayload {
		return nil, fmt.Errorf("node metadata is %d bytes; at most %d fit a metadata exchange frame", len(body), maxPayload)
	}
	frame := make([]byte, headerSize, headerSize+len(body))
	binary.BigEndian.PutUint32(frame[0:4], magic)
	binary.BigEndian.PutUint32(frame[4:8], uint32(len(body)))
	return &Exchanger{frame: append(frame, body...)}, nil
}

// Negotiated reports whether conn's TLS handshake chose the exchange
// protocol: only then do both ends expect frames.
func Negotiated(conn net.Conn) bool {
	tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	return ok && tc.ConnectionState().NegotiatedProtocol == Protocol
}

// Accept runs the server side on a connection whose ALPN is the exchange
// protocol: it reads the client's frame and answers with its own. A client
// that sends no frame (its first bytes are not one) gets no answer and its
// bytes are kept for the application, as Envoy falls back. The returned
// connection must be used instead of conn from then on.
func (e *Exchanger) Accept(conn net.Conn, timeout time.Duration) (net.Conn, *Peer, error) {
	bc := newBufferedConn(conn)
	conn.SetReadDeadline(time.Now().Add(timeout))
	peer, err := readFrame(bc.r)
	conn.SetReadDeadline(time.Time{})
	if err != nil || peer == nil {
		return bc, nil, err
	}
	if _, err := conn.Write(e.frame); err != nil {
		return bc, peer, fmt.Errorf("metadata exchange: answering: %w", err)
	}
	return bc, peer, nil
}

// Connect runs the client side: it writes the proxy's frame and reads the
// server's answer, waiting at most timeout (a server that does not answer
// is an application speaking first; its bytes are kept).
func (e *Exchanger) Connect(conn net.Conn, timeout time.Duration) (net.Conn, *Peer, error) {
	if _, err := conn.Write(e.frame); err != nil {
		return conn, nil, fmt.Errorf("metadata exchange: sending: %w", err)
	}
	bc := newBufferedConn(conn)
	conn.SetReadDeadline(time.Now().Add(timeout))
	peer, err := readFrame(bc.r)
	conn.SetReadDeadline(time.Time{})
	return bc, peer, err
}

// readFrame consumes one frame from r. When r's first bytes are not a
// frame's header, or fewer arrive before the read ends, nothing is
// consumed and the peer is nil. A frame that starts right but is malformed
// is an error: the stream cannot be resynchronized.
func readFrame(r *bufio.Reader) (*Peer, error) {
	hdr, ok := peekHeader(r)
	if !ok {
		return nil, nil
	}
	size := binary.BigEndian.Uint32(hdr[4:8])
	if size > maxPayload {
		return nil, fmt.Errorf("metadata exchange: frame of %d bytes exceeds %d", size, maxPayload)
	}
	buf := make([]byte, headerSize+int(size))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("metadata exchange: reading the frame: %w", err)
	}
	var a anypb.Any
	if err := proto.Unmarshal(buf[headerSize:], &a); err != nil {
		return nil, fmt.Errorf("metadata exchange: %w", err)
	}
	var payload structpb.Struct
	if err := a.UnmarshalTo(&payload); err != nil {
		return nil, fmt.Errorf("metadata exchange: payload %s: %w", a.GetTypeUrl(), err)
	}
	f := payload.GetFields()
	return &Peer{Metadata: f[keyMetadata].GetStructValue(), ID: f[keyID].GetStringValue()}, nil
}

// peekHeader peeks at a frame header without consuming it. It gives up as
// soon as a byte differs from the magic number, so a peer that sent a few
// bytes of its own protocol and waits for an answer is not kept waiting
// for a full header.
func peekHeader(r *bufio.Reader) ([]byte, bool) {
	var want [4]byte
	binary.BigEndian.PutUint32(want[:], magic)
	for n := 1; n <= len(want); n++ {
		b, err := r.Peek(n)
		if err != nil || b[n-1] != want[n-1] {
			return nil, false
		}
	}
	hdr, err := r.Peek(headerSize)
	return hdr, err == nil
}

// bufferedConn is a connection whose reads first drain what the exchange
// read ahead. It keeps the half-close and TLS state of the connection it
// wraps, which tcp_proxy and network RBAC rely on.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func newBufferedConn(c net.Conn) *bufferedConn {
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, headerSize+512)}
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the wrapped connection when it can.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// ConnectionState is the wrapped connection's TLS state (zero if plain).
func (c *bufferedConn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}
