package hcm

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// grpcStream encodes messages of the given sizes as gRPC length-prefixed
// messages.
func grpcStream(sizes ...int) []byte {
	var b bytes.Buffer
	for _, n := range sizes {
		var prefix [5]byte
		binary.BigEndian.PutUint32(prefix[1:], uint32(n))
		b.Write(prefix[:])
		b.Write(bytes.Repeat([]byte{'x'}, n))
	}
	return b.Bytes()
}

// TestGRPCMessageCount: messages are counted however the writes split
// the stream, including inside a prefix, and empty messages count too.
func TestGRPCMessageCount(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
		chunk int // write size; 0: all at once
	}{
		{"one message", []int{10}, 0},
		{"unary empty message", []int{0}, 0},
		{"stream at once", []int{3, 0, 70000, 1}, 0},
		{"byte by byte", []int{3, 0, 17, 1}, 1},
		{"split inside prefixes", []int{2, 2, 2, 2}, 3},
		{"large chunks", []int{40000, 40000}, 32 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := grpcStream(tc.sizes...)
			chunk := tc.chunk
			if chunk == 0 {
				chunk = len(data)
			}
			var g grpcMessages
			for len(data) > 0 {
				n := min(chunk, len(data))
				g.feed(data[:n])
				data = data[n:]
			}
			if g.total() != int64(len(tc.sizes)) {
				t.Errorf("counted %d messages, want %d", g.total(), len(tc.sizes))
			}
		})
	}
	var none *grpcMessages
	if none.total() != 0 {
		t.Error("a request that is not gRPC has messages")
	}
}
