// Package tracing is the proxy's distributed tracing: it compiles an HTTP
// connection manager's `tracing` config, starts a span per request (server
// span on inbound and gateway listeners, client span on outbound ones),
// propagates B3 and W3C trace context upstream and exports finished spans
// in batches, asynchronously, to a Zipkin (v2 JSON) or OpenTelemetry (OTLP
// over HTTP) collector.
package tracing

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"strings"
)

// Header names of the propagation formats the proxy reads and writes.
const (
	hTraceID      = "X-B3-Traceid"
	hSpanID       = "X-B3-Spanid"
	hParentSpanID = "X-B3-Parentspanid"
	hSampled      = "X-B3-Sampled"
	hFlags        = "X-B3-Flags"
	hB3           = "B3"
	hTraceparent  = "Traceparent"
	hForceTrace   = "X-Envoy-Force-Trace"
	hClientTrace  = "X-Client-Trace-Id"
	// hDecoratorOperation carries the client's span name to the server.
	hDecoratorOperation = "X-Envoy-Decorator-Operation"
)

// decision is a sampling decision carried by a trace context.
type decision int

const (
	undecided decision = iota
	sampled
	notSampled
)

// SpanContext identifies a span and the trace it belongs to, as propagated
// between services. IDs are lowercase hex: 32 digits for a trace (64-bit
// B3 trace ids are left-padded), 16 for a span.
type SpanContext struct {
	TraceID  string
	SpanID   string
	ParentID string
	decision decision
	Debug    bool // x-b3-flags: 1, always sampled
}

// Sampled reports whether the context carries a positive decision.
func (c SpanContext) Sampled() bool { return c.decision == sampled || c.Debug }

// Extract reads the trace context of an incoming request. B3 multi-header
// wins over the single b3 header, which wins over W3C traceparent, as
// Envoy's Zipkin tracer orders them. ok is false when no valid trace and
// span id were found; the returned context may still carry a sampling
// decision (a bare "x-b3-sampled: 0" or "b3: 0").
func Extract(h http.Header) (c SpanContext, ok bool) {
	if v := h.Get(hSampled); v != "" {
		c.decision = parseSampled(v)
	}
	if h.Get(hFlags) == "1" {
		c.Debug = true
	}
	if tid, sid := h.Get(hTraceID), h.Get(hSpanID); tid != "" && sid != "" {
		if t, ok := normTraceID(tid); ok && validSpanID(sid) {
			c.TraceID, c.SpanID = t, strings.ToLower(sid)
			if p := h.Get(hParentSpanID); validSpanID(p) {
				c.ParentID = strings.ToLower(p)
			}
			return c, true
		}
	}
	if v := h.Get(hB3); v != "" {
		if b, ok := parseB3(v); ok {
			if c.decision != undecided && b.decision == undecided {
				b.decision = c.decision
			}
			return b, b.TraceID != ""
		}
	}
	if v := h.Get(hTraceparent); v != "" {
		if w, ok := parseTraceparent(v); ok {
			if c.decision != undecided { // an explicit B3 decision wins
				w.decision = c.decision
			}
			return w, true
		}
	}
	return c, false
}

// parseB3 reads the single-header form: {trace}-{span}[-{sampled}[-{parent}]]
// or just a decision ("0", "1", "d").
func parseB3(v string) (SpanContext, bool) {
	var c SpanContext
	parts := strings.Split(strings.TrimSpace(v), "-")
	if len(parts) == 1 {
		c.decision, c.Debug = parseSampled(parts[0]), parts[0] == "d"
		return c, c.decision != undecided
	}
	if len(parts) > 4 {
		return c, false
	}
	t, ok := normTraceID(parts[0])
	if !ok || !validSpanID(parts[1]) {
		return c, false
	}
	c.TraceID, c.SpanID = t, strings.ToLower(parts[1])
	if len(parts) >= 3 {
		c.decision, c.Debug = parseSampled(parts[2]), parts[2] == "d"
	}
	if len(parts) == 4 {
		if !validSpanID(parts[3]) {
			return SpanContext{}, false
		}
		c.ParentID = strings.ToLower(parts[3])
	}
	return c, true
}

// parseTraceparent reads W3C trace context version 00:
// 00-{32 hex trace}-{16 hex parent}-{2 hex flags}.
func parseTraceparent(v string) (SpanContext, bool) {
	var c SpanContext
	parts := strings.Split(strings.TrimSpace(v), "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || len(parts[1]) != 32 || len(parts[3]) != 2 {
		return c, false
	}
	if parts[0] == "00" && len(parts) != 4 {
		return c, false
	}
	if !isHex(parts[1]) || allZero(parts[1]) || !validSpanID(parts[2]) || !isHex(parts[3]) {
		return c, false
	}
	flags, _ := hex.DecodeString(parts[3])
	c.TraceID, c.SpanID = strings.ToLower(parts[1]), strings.ToLower(parts[2])
	c.decision = notSampled
	if flags[0]&1 == 1 {
		c.decision = sampled
	}
	return c, true
}

func parseSampled(v string) decision {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "d":
		return sampled
	case "0", "false":
		return notSampled
	}
	return undecided
}

// Inject writes c as the context of the request going upstream: B3
// multi-header always, the single b3 header when the request used it, and
// W3C traceparent (tracestate passes through untouched).
func Inject(h http.Header, c SpanContext) {
	h.Set(hTraceID, c.TraceID)
	h.Set(hSpanID, c.SpanID)
	if c.ParentID != "" {
		h.Set(hParentSpanID, c.ParentID)
	} else {
		h.Del(hParentSpanID)
	}
	s := "0"
	if c.Sampled() {
		s = "1"
	}
	h.Set(hSampled, s)
	if c.Debug {
		h.Set(hFlags, "1")
	} else {
		h.Del(hFlags)
	}
	if h.Get(hB3) != "" {
		b := c.TraceID + "-" + c.SpanID + "-" + s
		if c.Debug {
			b = c.TraceID + "-" + c.SpanID + "-d"
		}
		if c.ParentID != "" {
			b += "-" + c.ParentID
		}
		h.Set(hB3, b)
	}
	flags := "00"
	if c.Sampled() {
		flags = "01"
	}
	h.Set(hTraceparent, "00-"+c.TraceID+"-"+c.SpanID+"-"+flags)
}

// normTraceID accepts a 16 or 32 digit hex trace id and returns it as 32.
func normTraceID(s string) (string, bool) {
	if (len(s) != 16 && len(s) != 32) || !isHex(s) || allZero(s) {
		return "", false
	}
	s = strings.ToLower(s)
	if len(s) == 16 {
		s = "0000000000000000" + s
	}
	return s, true
}

func validSpanID(s string) bool { return len(s) == 16 && isHex(s) && !allZero(s) }

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

func allZero(s string) bool { return strings.Trim(s, "0") == "" }

// newID returns n random bytes as hex, never all zeros.
// fillRandom fills b from the goroutine-local ChaCha8 generator: trace and
// span ids need uniqueness, not secrecy (Envoy uses a non-cryptographic
// generator too), and this costs no system call.
func fillRandom(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64()
		for j := i; j < len(b) && j < i+8; j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
}

func newID(n int) string {
	var raw [16]byte
	var text [32]byte
	b := raw[:n]
	for {
		fillRandom(b)
		for _, x := range b {
			if x != 0 {
				hex.Encode(text[:], b)
				return string(text[:2*n])
			}
		}
	}
}
