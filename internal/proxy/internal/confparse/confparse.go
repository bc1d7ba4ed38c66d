// Package confparse is the proxy's one door for the two costly kinds of
// config work: decoding a typed config (anypb.Any) and compiling a regular
// expression. Both belong where config arrives, never on the request path;
// every call is counted so a test can run requests and prove neither
// happened (see TestRequestPathParsesNothing in package hcm). A source scan
// (TestOneParseDoor) keeps other proxy code from calling around it.
package confparse

import (
	"regexp"
	"sync/atomic"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

var unmarshals, regexps atomic.Int64

// Unmarshal decodes a typed config into m.
func Unmarshal(a *anypb.Any, m proto.Message) error {
	unmarshals.Add(1)
	return a.UnmarshalTo(m)
}

// Regexp compiles a regular expression (RE2 syntax, as Envoy's safe_regex).
func Regexp(expr string) (*regexp.Regexp, error) {
	regexps.Add(1)
	return regexp.Compile(expr)
}

// Counts reports the calls made so far in this process.
func Counts() (unmarshals_, regexps_ int64) {
	return unmarshals.Load(), regexps.Load()
}
