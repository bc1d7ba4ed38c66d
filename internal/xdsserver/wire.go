package xdsserver

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Every proxy sharing a typeSet is sent the same resources, so their wire
// form is built once per set and each stream sends a DiscoveryResponse whose
// bytes are a few per-stream fields around those shared bytes: encoding the
// whole response per stream (into a zeroed pooled buffer) was a tenth of the
// control plane's CPU at 2000 proxies.

// DiscoveryResponse field numbers (envoy.service.discovery.v3).
const (
	respVersionInfo protowire.Number = 1
	respResources   protowire.Number = 2
	respTypeURL     protowire.Number = 4
	respNonce       protowire.Number = 5
)

// encodedResponse is a DiscoveryResponse whose resources field is already
// encoded: chunks are whole `resources` entries (tag, length, Any),
// concatenated; they are shared between streams and never written.
type encodedResponse struct {
	version, typeURL, nonce string
	chunks                  [][]byte
}

// wireAny encodes an Any of typeURL and value as one `resources` entry of a
// DiscoveryResponse, with the bytes proto.Marshal gives; it also returns the
// entry's copy of value, so the resource's Any can point into it.
func wireAny(typeURL string, value []byte) (entry, valueInEntry []byte) {
	anyLen := protowire.SizeTag(1) + protowire.SizeBytes(len(typeURL))
	if len(value) > 0 {
		anyLen += protowire.SizeTag(2) + protowire.SizeBytes(len(value))
	}
	b := make([]byte, 0, protowire.SizeTag(respResources)+protowire.SizeBytes(anyLen))
	b = protowire.AppendTag(b, respResources, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anyLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, typeURL)
	if len(value) == 0 {
		return b, nil
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, value)
	return b, b[len(b)-len(value):]
}

func appendStringField(b []byte, n protowire.Number, s string) []byte {
	if s == "" {
		return b // proto3: an empty string is not on the wire
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// buffers lays r out in field-number order, as proto.Marshal does, so the
// bytes equal those of the equivalent DiscoveryResponse.
func (r *encodedResponse) buffers() mem.BufferSlice {
	head := appendStringField(nil, respVersionInfo, r.version)
	tail := appendStringField(nil, respTypeURL, r.typeURL)
	tail = appendStringField(tail, respNonce, r.nonce)
	out := make(mem.BufferSlice, 0, len(r.chunks)+2)
	if len(head) > 0 {
		out = append(out, mem.SliceBuffer(head))
	}
	for _, c := range r.chunks {
		if len(c) > 0 {
			// A SliceBuffer is not pooled: gRPC's Free of it does nothing,
			// so the shared bytes are never recycled under other streams.
			out = append(out, mem.SliceBuffer(c))
		}
	}
	if len(tail) > 0 {
		out = append(out, mem.SliceBuffer(tail))
	}
	return out
}

// codec is gRPC's proto codec that also sends an encodedResponse as its
// bytes. Requests and every other message go through the proto codec.
type codec struct{ proto encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*encodedResponse); ok {
		return r.buffers(), nil
	}
	if r, ok := v.(*encodedDelta); ok {
		return r.buffers(), nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*encodedResponse); ok {
		return fmt.Errorf("xdsserver: an encoded DiscoveryResponse is only sent, never received")
	}
	return c.proto.Unmarshal(data, v)
}

func (c codec) Name() string { return protoenc.Name }

func newCodec() codec {
	pc := encoding.GetCodecV2(protoenc.Name)
	if pc == nil {
		panic("gRPC's proto codec is not registered")
	}
	return codec{proto: pc}
}

// GRPCServerOption is the option the gRPC server s is registered on must be
// created with: it installs the codec that sends shared resources without
// encoding them per stream. Without it s sends ordinary DiscoveryResponses.
func (s *Server) GRPCServerOption() grpc.ServerOption {
	s.preEncoded.Store(true)
	return grpc.ForceServerCodecV2(newCodec())
}
