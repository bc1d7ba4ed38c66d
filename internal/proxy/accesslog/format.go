package accesslog

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/skein-mesh/skein/internal/proxy/filters"
)

// value is one operator's value for a request: a string, an int64 or
// absent (rendered "-" in text, null in JSON).
type value struct {
	s     string
	n     int64
	isNum bool
	ok    bool
}

func str(s string) value {
	if s == "" {
		return value{}
	}
	return value{s: s, ok: true}
}
func num(n int64) value { return value{n: n, isNum: true, ok: true} }

func (v value) text() string {
	switch {
	case !v.ok:
		return "-"
	case v.isNum:
		return strconv.FormatInt(v.n, 10)
	}
	return v.s
}

func (v value) json() any {
	switch {
	case !v.ok:
		return nil
	case v.isNum:
		return v.n
	}
	return v.s
}

// operator renders one %COMMAND(arg):max% of Envoy's format strings.
type operator func(info *filters.RequestInfo) value

// segment is literal text or an operator.
type segment struct {
	lit string
	op  operator
}

// template is a compiled text format string.
type template []segment

func (t template) render(info *filters.RequestInfo) string {
	var b strings.Builder
	for _, s := range t {
		if s.op == nil {
			b.WriteString(s.lit)
			continue
		}
		b.WriteString(s.op(info).text())
	}
	return b.String()
}

// parseTemplate compiles a format string; an unknown command is an error
// (the config is NACKed rather than logging garbage).
func parseTemplate(f string) (template, error) {
	var t template
	for len(f) > 0 {
		i := strings.IndexByte(f, '%')
		if i < 0 {
			t = append(t, segment{lit: f})
			break
		}
		if i > 0 {
			t = append(t, segment{lit: f[:i]})
		}
		f = f[i+1:]
		if strings.HasPrefix(f, "%") { // "%%" is a literal percent
			t = append(t, segment{lit: "%"})
			f = f[1:]
			continue
		}
		j := strings.IndexByte(f, '%')
		if j < 0 {
			return nil, fmt.Errorf("unterminated command %q", "%"+f)
		}
		// A START_TIME format may itself contain '%' (strftime): the
		// command then ends at ")%".
		if strings.HasPrefix(f, "START_TIME(") {
			if k := strings.Index(f, ")%"); k >= 0 {
				j = k + 1
			}
		}
		op, err := parseOperator(f[:j])
		if err != nil {
			return nil, err
		}
		t = append(t, segment{op: op})
		f = f[j+1:]
	}
	return t, nil
}

// parseOperator compiles "COMMAND", "COMMAND(arg)" or "COMMAND(arg):max".
func parseOperator(cmd string) (operator, error) {
	name, arg, maxLen := cmd, "", -1
	if i := strings.IndexByte(cmd, '('); i >= 0 {
		k := strings.LastIndexByte(cmd, ')')
		if k < i {
			return nil, fmt.Errorf("command %%%s%%: missing ')'", cmd)
		}
		name, arg = cmd[:i], cmd[i+1:k]
		if rest := cmd[k+1:]; rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return nil, fmt.Errorf("command %%%s%%: unexpected %q", cmd, rest)
			}
			n, err := strconv.Atoi(rest[1:])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("command %%%s%%: bad length %q", cmd, rest[1:])
			}
			maxLen = n
		}
	}
	op, err := command(name, arg)
	if err != nil {
		return nil, fmt.Errorf("command %%%s%%: %v", cmd, err)
	}
	if maxLen >= 0 {
		inner := op
		op = func(info *filters.RequestInfo) value {
			v := inner(info)
			if v.ok && !v.isNum && len(v.s) > maxLen {
				v.s = v.s[:maxLen]
			}
			return v
		}
	}
	return op, nil
}

func command(name, arg string) (operator, error) {
	needArg := func() error {
		if arg == "" {
			return fmt.Errorf("an argument is required")
		}
		return nil
	}
	noArg := func(op operator) (operator, error) {
		if arg != "" {
			return nil, fmt.Errorf("takes no argument")
		}
		return op, nil
	}
	switch name {
	case "REQ":
		if err := needArg(); err != nil {
			return nil, err
		}
		main, alt, _ := strings.Cut(arg, "?")
		return func(info *filters.RequestInfo) value {
			if v := reqHeader(info, main); v != "" {
				return str(v)
			}
			if alt != "" {
				return str(reqHeader(info, alt))
			}
			return value{}
		}, nil
	case "RESP", "TRAILER":
		if err := needArg(); err != nil {
			return nil, err
		}
		main, alt, _ := strings.Cut(arg, "?")
		trailer := name == "TRAILER"
		return func(info *filters.RequestInfo) value {
			h := info.ResponseHeader
			if trailer {
				h = info.Trailer
			}
			if v := h.Get(main); v != "" {
				return str(v)
			}
			if alt != "" {
				return str(h.Get(alt))
			}
			return value{}
		}, nil
	case "START_TIME":
		layout, err := strftime(arg)
		if err != nil {
			return nil, err
		}
		return func(info *filters.RequestInfo) value { return str(info.Start.UTC().Format(layout)) }, nil
	}
	op, ok := simple[name]
	if !ok {
		return nil, fmt.Errorf("unknown or unsupported command")
	}
	return noArg(op)
}

// simple are the commands without arguments.
var simple = map[string]operator{
	"PROTOCOL": func(i *filters.RequestInfo) value {
		if i.Request == nil {
			return value{}
		}
		return str(i.Request.HTTP.Proto)
	},
	"RESPONSE_CODE":  func(i *filters.RequestInfo) value { return num(int64(i.Status)) },
	"RESPONSE_FLAGS": func(i *filters.RequestInfo) value { return str(i.ResponseFlags) },
	// Details Envoy records: via_upstream when the upstream answered.
	"RESPONSE_CODE_DETAILS": func(i *filters.RequestInfo) value {
		if i.UpstreamHost != "" && i.ResponseFlags == "-" {
			return str("via_upstream")
		}
		return value{}
	},
	// Termination and transport failure reasons are not tracked: "-".
	"CONNECTION_TERMINATION_DETAILS":    func(*filters.RequestInfo) value { return value{} },
	"UPSTREAM_TRANSPORT_FAILURE_REASON": func(*filters.RequestInfo) value { return value{} },
	"UPSTREAM_LOCAL_ADDRESS":            func(*filters.RequestInfo) value { return value{} },
	"BYTES_RECEIVED":                    func(i *filters.RequestInfo) value { return num(i.BytesReceived) },
	"BYTES_SENT":                        func(i *filters.RequestInfo) value { return num(i.BytesSent) },
	"DURATION":                          func(i *filters.RequestInfo) value { return num(i.Duration.Milliseconds()) },
	"UPSTREAM_HOST":                     func(i *filters.RequestInfo) value { return str(i.UpstreamHost) },
	"UPSTREAM_CLUSTER":                  func(i *filters.RequestInfo) value { return str(i.Cluster) },
	"UPSTREAM_CLUSTER_RAW":              func(i *filters.RequestInfo) value { return str(i.Cluster) },
	"UPSTREAM_REQUEST_ATTEMPT_COUNT":    func(i *filters.RequestInfo) value { return num(int64(i.Attempts)) },
	"DOWNSTREAM_LOCAL_ADDRESS": func(i *filters.RequestInfo) value {
		if c := conn(i); c != nil && c.Destination.IsValid() {
			return str(c.Destination.String())
		}
		return value{}
	},
	"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": func(i *filters.RequestInfo) value {
		if c := conn(i); c != nil && c.Destination.IsValid() {
			return str(c.Destination.Addr().String())
		}
		return value{}
	},
	"DOWNSTREAM_REMOTE_ADDRESS": func(i *filters.RequestInfo) value {
		if c := conn(i); c != nil && c.Source.IsValid() {
			return str(c.Source.String())
		}
		return value{}
	},
	"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": func(i *filters.RequestInfo) value {
		if c := conn(i); c != nil && c.Source.IsValid() {
			return str(c.Source.Addr().String())
		}
		return value{}
	},
	"DOWNSTREAM_PEER_URI_SAN": func(i *filters.RequestInfo) value {
		if c := conn(i); c != nil && c.PeerPrincipal != "" {
			return str("spiffe://" + c.PeerPrincipal)
		}
		return value{}
	},
	"DOWNSTREAM_TLS_VERSION": func(i *filters.RequestInfo) value {
		if i.Request != nil && i.Request.HTTP.TLS != nil {
			return str(tlsVersion(i.Request.HTTP.TLS.Version))
		}
		return value{}
	},
	"REQUESTED_SERVER_NAME": func(i *filters.RequestInfo) value {
		if c := conn(i); c != nil {
			return str(c.SNI)
		}
		return value{}
	},
	"ROUTE_NAME": func(i *filters.RequestInfo) value {
		if i.Request != nil && i.Request.Route != nil {
			return str(i.Request.Route.RouteName)
		}
		return value{}
	},
	"HOSTNAME": func(*filters.RequestInfo) value {
		h, _ := os.Hostname()
		return str(h)
	},
}

func conn(i *filters.RequestInfo) *filters.Conn {
	if i.Request == nil {
		return nil
	}
	return i.Request.Conn
}

func tlsVersion(v uint16) string {
	switch v {
	case 0x0304:
		return "TLSv1.3"
	case 0x0303:
		return "TLSv1.2"
	}
	return fmt.Sprintf("0x%04x", v)
}

// reqHeader reads a request header, pseudo-headers included.
func reqHeader(info *filters.RequestInfo, name string) string {
	if info.Request == nil {
		return ""
	}
	r := info.Request.HTTP
	switch strings.ToLower(name) {
	case ":method":
		return r.Method
	case ":path":
		return r.URL.RequestURI()
	case ":authority":
		return r.Host
	case ":scheme":
		if r.TLS != nil {
			return "https"
		}
		return "http"
	}
	return http.Header(r.Header).Get(name)
}

// strftime converts the strftime subset used in access log formats to a
// Go layout; empty is Envoy's default (RFC 3339 with milliseconds, UTC).
func strftime(f string) (string, error) {
	if f == "" {
		return "2006-01-02T15:04:05.000Z", nil
	}
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch f[i] {
		case 'Y':
			b.WriteString("2006")
		case 'm':
			b.WriteString("01")
		case 'd':
			b.WriteString("02")
		case 'H':
			b.WriteString("15")
		case 'M':
			b.WriteString("04")
		case 'S':
			b.WriteString("05")
		case 'z':
			b.WriteString("-0700")
		case 'Z':
			b.WriteString("MST")
		case 's':
			return "", fmt.Errorf("START_TIME format %%s is not supported")
		case 'F':
			b.WriteString("2006-01-02")
		case 'T':
			b.WriteString("15:04:05")
		case '%':
			b.WriteByte('%')
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			if i+1 < len(f) && f[i+1] == 'f' {
				b.WriteString(strings.Repeat("0", int(f[i]-'0'))) // after a literal "."
				i++
				continue
			}
			return "", fmt.Errorf("START_TIME format %%%c is not supported", f[i])
		default:
			return "", fmt.Errorf("START_TIME format %%%c is not supported", f[i])
		}
	}
	return b.String(), nil
}

// jsonFormat renders a JSON object whose values are format strings; a
// value that is exactly one command keeps its type (numbers stay numbers).
type jsonFormat struct {
	keys      []string
	values    []template
	omitEmpty bool
}

func (j *jsonFormat) render(info *filters.RequestInfo) string {
	m := make(map[string]any, len(j.keys))
	for i, k := range j.keys {
		t := j.values[i]
		var v any
		if len(t) == 1 && t[0].op != nil {
			v = t[0].op(info).json()
		} else {
			v = t.render(info)
		}
		if v == nil && j.omitEmpty {
			continue
		}
		m[k] = v
	}
	b, _ := json.Marshal(m) // keys sorted, as Envoy's JSON formatter does
	return string(b) + "\n"
}
