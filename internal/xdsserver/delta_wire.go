package xdsserver

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// A delta response is encoded like a SotW one (wire.go): each resource's
// Resource entry is built once per push and shared by every stream that
// sends it, so a change sent to 2000 proxies is not marshalled 2000 times.

// DeltaDiscoveryResponse and Resource field numbers
// (envoy.service.discovery.v3).
const (
	deltaSystemVersion protowire.Number = 1
	deltaResources     protowire.Number = 2
	deltaTypeURL       protowire.Number = 4
	deltaNonce         protowire.Number = 5
	deltaRemoved       protowire.Number = 6

	resourceVersionField protowire.Number = 1
	// Resource.resource is field 2, as DiscoveryResponse.resources is: a
	// marshalled's wire entry is that field as it is.
	resourceNameField protowire.Number = 3
)

// encodedDelta is a DeltaDiscoveryResponse whose resources are already
// encoded; chunks are shared between streams and never written.
type encodedDelta struct {
	version, typeURL, nonce string
	chunks                  [][]byte
	removed                 []string
}

// deltaEntry returns m as one `resources` entry of a
// DeltaDiscoveryResponse: a Resource with its name, version and Any.
func (m *marshalled) deltaEntry() []byte {
	if b := m.delta.Load(); b != nil {
		return *b
	}
	body := appendStringField(nil, resourceVersionField, resourceVersion(m))
	body = append(body, m.wire...)
	body = appendStringField(body, resourceNameField, m.name)
	b := protowire.AppendTag(make([]byte, 0, len(body)+protowire.SizeTag(deltaResources)+protowire.SizeVarint(uint64(len(body)))), deltaResources, protowire.BytesType)
	b = protowire.AppendBytes(b, body)
	m.delta.CompareAndSwap(nil, &b)
	return *m.delta.Load()
}

// buffers lays r out in field-number order, as proto.Marshal does.
func (r *encodedDelta) buffers() mem.BufferSlice {
	out := make(mem.BufferSlice, 0, len(r.chunks)+2)
	if head := appendStringField(nil, deltaSystemVersion, r.version); len(head) > 0 {
		out = append(out, mem.SliceBuffer(head))
	}
	for _, c := range r.chunks {
		out = append(out, mem.SliceBuffer(c)) // not pooled: never recycled
	}
	tail := appendStringField(nil, deltaTypeURL, r.typeURL)
	tail = appendStringField(tail, deltaNonce, r.nonce)
	for _, n := range r.removed {
		tail = protowire.AppendTag(tail, deltaRemoved, protowire.BytesType)
		tail = protowire.AppendString(tail, n)
	}
	if len(tail) > 0 {
		out = append(out, mem.SliceBuffer(tail))
	}
	return out
}
