package analyze

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// regexAnalyzer: IST0122 for VirtualService regular expressions that do
// not compile (Envoy's RE2, which Go's regexp implements).
func regexAnalyzer(c *context) {
	for _, e := range c.in.List("VirtualService") {
		vs, ok := e.Obj.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		check := func(where string, m *networking.StringMatch, path string) {
			re := m.GetRegex()
			if re == "" {
				return
			}
			if _, err := regexp.Compile(re); err != nil {
				c.report(InvalidRegexp, e, path, where, re, regexProblem(err))
			}
		}
		for i, r := range vs.GetHttp() {
			for j, m := range r.GetMatch() {
				base := fmt.Sprintf("spec.http[%d].match[%d]", i, j)
				check("uri", m.GetUri(), base+".uri.regex")
				check("scheme", m.GetScheme(), base+".scheme.regex")
				check("method", m.GetMethod(), base+".method.regex")
				check("authority", m.GetAuthority(), base+".authority.regex")
				for _, k := range sortedMatchKeys(m.GetHeaders()) {
					check("headers", m.GetHeaders()[k], base+".headers."+k+".regex")
				}
				for _, k := range sortedMatchKeys(m.GetQueryParams()) {
					check("queryParams", m.GetQueryParams()[k], base+".queryParams."+k+".regex")
				}
				for _, k := range sortedMatchKeys(m.GetWithoutHeaders()) {
					check("withoutHeaders", m.GetWithoutHeaders()[k], base+".withoutHeaders."+k+".regex")
				}
			}
			for j, o := range r.GetCorsPolicy().GetAllowOrigins() {
				check("corsPolicy.allowOrigins", o, fmt.Sprintf("spec.http[%d].corsPolicy.allowOrigins[%d].regex", i, j))
			}
		}
	}
}

func regexProblem(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return string(se.Code)
	}
	return err.Error()
}

func sortedMatchKeys(m map[string]*networking.StringMatch) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// matchAnalyzer: IST0130 for VirtualService rules that can never be used
// and IST0131 for matches that repeat an earlier one, for HTTP, TCP and
// TLS routes alike.
func matchAnalyzer(c *context) {
	for _, e := range c.in.List("VirtualService") {
		vs, ok := e.Obj.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		var http, tcp, tls []ruleMatches
		for i, r := range vs.GetHttp() {
			rm := ruleMatches{name: r.GetName(), path: fmt.Sprintf("spec.http[%d]", i)}
			for _, m := range r.GetMatch() {
				mc := proto.Clone(m).(*networking.HTTPMatchRequest)
				mc.Name = ""
				rm.matches = append(rm.matches, namedMatch{m.GetName(), mc})
			}
			http = append(http, rm)
		}
		for i, r := range vs.GetTcp() {
			rm := ruleMatches{path: fmt.Sprintf("spec.tcp[%d]", i)}
			for _, m := range r.GetMatch() {
				rm.matches = append(rm.matches, namedMatch{"", m})
			}
			tcp = append(tcp, rm)
		}
		for i, r := range vs.GetTls() {
			rm := ruleMatches{path: fmt.Sprintf("spec.tls[%d]", i)}
			for _, m := range r.GetMatch() {
				rm.matches = append(rm.matches, namedMatch{"", m})
			}
			tls = append(tls, rm)
		}
		for _, rules := range [][]ruleMatches{http, tcp, tls} {
			unreachableRules(c, e, rules)
		}
	}
}

type namedMatch struct {
	name string
	m    proto.Message
}

type ruleMatches struct {
	name    string
	path    string
	matches []namedMatch
}

func (r ruleMatches) label(i int) string {
	if r.name != "" {
		return r.name
	}
	return "#" + strconv.Itoa(i)
}

func unreachableRules(c *context, e *Entry, rules []ruleMatches) {
	seen := map[string]int{}
	catchAll := -1
	for i, r := range rules {
		if len(r.matches) == 0 {
			if catchAll >= 0 {
				c.report(VSUnreachableRule, e, r.path, r.label(i), "only the last rule can have no matches")
			}
			catchAll = i
			continue
		}
		dups := 0
		for j, m := range r.matches {
			key := canonical(m.m)
			if prev, ok := seen[key]; ok {
				dups++
				mname := m.name
				if mname == "" {
					mname = "#" + strconv.Itoa(j)
				}
				c.report(VSIneffectiveMatch, e, fmt.Sprintf("%s.match[%d]", r.path, j), r.label(i), mname, rules[prev].label(prev))
				continue
			}
			seen[key] = i
		}
		if dups == len(r.matches) {
			c.report(VSUnreachableRule, e, r.path, r.label(i), "all matches used by prior rules")
		}
	}
}

// canonical is a match's content as deterministic JSON, so equal matches
// compare equal.
func canonical(m proto.Message) string {
	b, err := protojson.MarshalOptions{}.Marshal(m)
	if err != nil {
		return fmt.Sprint(m)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	out, _ := json.Marshal(v) // map keys sorted
	return string(out)
}
