// Package protocheck finds fields of an Envoy message that the proxy does not
// implement, so that such config is NACKed instead of silently ignored.
package protocheck

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Allowed is the set of field names of one message kind the proxy handles
// (implements, or knows to be informational).
type Allowed map[protoreflect.Name]bool

// Fields builds an Allowed set for m's kind and panics on a name m does not
// have, so a typo fails at start-up rather than letting a field through.
func Fields(m proto.Message, names ...string) Allowed {
	desc := m.ProtoReflect().Descriptor()
	set := make(Allowed, len(names))
	for _, n := range names {
		if desc.Fields().ByName(protoreflect.Name(n)) == nil {
			panic(fmt.Sprintf("protocheck: %s has no field %q", desc.FullName(), n))
		}
		set[protoreflect.Name(n)] = true
	}
	return set
}

// Check returns an error naming the first set field of m (in field order)
// that is not allowed, or that our protos do not know at all.
func (a Allowed) Check(m proto.Message) error {
	name, unknown := a.unsupported(m)
	switch {
	case name != "":
		return fmt.Errorf("field %s is not supported yet", name)
	case unknown:
		return fmt.Errorf("%s has fields unknown to this proxy", m.ProtoReflect().Descriptor().Name())
	}
	return nil
}

// CheckAs is Check for callers whose errors name the message the way their
// users know it (what): `unsupported header matcher field "range_match"`.
func (a Allowed) CheckAs(m proto.Message, what string) error {
	name, unknown := a.unsupported(m)
	switch {
	case name != "":
		return fmt.Errorf("unsupported %s field %q", what, name)
	case unknown:
		return fmt.Errorf("%s has fields unknown to this proxy", what)
	}
	return nil
}

// unsupported finds the first set field of m (in field order) that is not
// allowed, and whether m carries fields our protos do not know.
func (a Allowed) unsupported(m proto.Message) (name protoreflect.Name, unknown bool) {
	msg := m.ProtoReflect()
	if !msg.IsValid() {
		return "", false
	}
	fields := msg.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if msg.Has(fd) && !a[fd.Name()] {
			return fd.Name(), false
		}
	}
	return "", len(msg.GetUnknown()) > 0
}
