// Package accesslog is the proxy's HTTP access logging: it compiles an
// HTTP connection manager's access_log entries (envoy.access_loggers.file
// and .stdout) with Envoy's substitution format strings (text or JSON) and
// writes one line per completed request.
package accesslog

import (
	"fmt"
	"io"
	"os"
	"sync"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/internal/confparse"
	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
)

// DefaultFormat is Envoy's default text format, used when a logger
// configures none.
const DefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

var (
	accessLogFields = protocheck.Fields(&accesslogv3.AccessLog{}, "name", "typed_config")
	fileFields      = protocheck.Fields(&filev3.FileAccessLog{}, "path", "log_format")
	stdoutFields    = protocheck.Fields(&streamv3.StdoutAccessLog{}, "log_format")
	formatFields    = protocheck.Fields(&corev3.SubstitutionFormatString{}, "text_format", "text_format_source", "json_format", "omit_empty_values", "content_type")
	dataFields      = protocheck.Fields(&corev3.DataSource{}, "inline_string")
)

// renderer turns a completed request into one log line.
type renderer interface {
	render(info *filters.RequestInfo) string
}

type logger struct {
	format renderer
	out    *sink
}

// Loggers are the access logs of one connection manager.
type Loggers []logger

var _ filters.Observer = Loggers(nil)

// New compiles access_log entries. Unsupported loggers, fields and format
// commands are errors, so the listener is NACKed.
func New(cfgs []*accesslogv3.AccessLog) (Loggers, error) {
	var out Loggers
	for i, c := range cfgs {
		l, err := compile(c)
		if err != nil {
			return nil, fmt.Errorf("access_log[%d] %q: %v", i, c.GetName(), err)
		}
		out = append(out, l)
	}
	return out, nil
}

func compile(c *accesslogv3.AccessLog) (logger, error) {
	if err := accessLogFields.Check(c); err != nil {
		return logger{}, err
	}
	tc := c.GetTypedConfig()
	var format *corev3.SubstitutionFormatString
	var path string
	switch {
	case tc.MessageIs(&filev3.FileAccessLog{}):
		var f filev3.FileAccessLog
		if err := confparse.Unmarshal(tc, &f); err != nil {
			return logger{}, err
		}
		if err := fileFields.Check(&f); err != nil {
			return logger{}, err
		}
		if f.GetPath() == "" {
			return logger{}, fmt.Errorf("path is required")
		}
		path, format = f.GetPath(), f.GetLogFormat()
	case tc.MessageIs(&streamv3.StdoutAccessLog{}):
		var s streamv3.StdoutAccessLog
		if err := confparse.Unmarshal(tc, &s); err != nil {
			return logger{}, err
		}
		if err := stdoutFields.Check(&s); err != nil {
			return logger{}, err
		}
		path, format = "/dev/stdout", s.GetLogFormat()
	default:
		return logger{}, fmt.Errorf("typed_config %s is not supported (FileAccessLog and StdoutAccessLog are)", tc.GetTypeUrl())
	}
	r, err := compileFormat(format)
	if err != nil {
		return logger{}, fmt.Errorf("log_format: %v", err)
	}
	out, err := openSink(path)
	if err != nil {
		return logger{}, err
	}
	return logger{format: r, out: out}, nil
}

func compileFormat(f *corev3.SubstitutionFormatString) (renderer, error) {
	if f == nil {
		return parseTemplate(DefaultFormat)
	}
	if err := formatFields.Check(f); err != nil {
		return nil, err
	}
	if ct := f.GetContentType(); ct != "" && ct != "text/plain" && ct != "application/json" {
		return nil, fmt.Errorf("content_type %q is not supported", ct)
	}
	switch {
	case f.GetJsonFormat() != nil:
		j := &jsonFormat{omitEmpty: f.GetOmitEmptyValues()}
		for k, v := range f.GetJsonFormat().GetFields() {
			if _, isStr := v.AsInterface().(string); !isStr {
				return nil, fmt.Errorf("json_format %q: only string values are supported", k)
			}
			t, err := parseTemplate(v.GetStringValue())
			if err != nil {
				return nil, fmt.Errorf("json_format %q: %v", k, err)
			}
			j.keys, j.values = append(j.keys, k), append(j.values, t)
		}
		return j, nil
	case f.GetTextFormatSource() != nil:
		if err := dataFields.Check(f.GetTextFormatSource()); err != nil {
			return nil, fmt.Errorf("text_format_source: %v", err)
		}
		return textFormat(f.GetTextFormatSource().GetInlineString(), f.GetOmitEmptyValues())
	default:
		return textFormat(f.GetTextFormat(), f.GetOmitEmptyValues())
	}
}

func textFormat(s string, omitEmpty bool) (renderer, error) {
	if omitEmpty {
		return nil, fmt.Errorf("omit_empty_values is supported only with json_format")
	}
	if s == "" {
		s = DefaultFormat
	}
	return parseTemplate(s)
}

// OnComplete writes one line per logger.
func (ls Loggers) OnComplete(info *filters.RequestInfo) {
	for _, l := range ls {
		l.out.write(l.format.render(info))
	}
}

// sink is an output file shared by every logger writing to the same path
// (one open file per path per process, as Envoy's access log manager).
type sink struct {
	mu sync.Mutex
	w  io.Writer
}

var (
	sinksMu sync.Mutex
	sinks   = map[string]*sink{}
)

func openSink(path string) (*sink, error) {
	sinksMu.Lock()
	defer sinksMu.Unlock()
	if s := sinks[path]; s != nil {
		return s, nil
	}
	var w io.Writer
	switch path {
	case "/dev/stdout":
		w = os.Stdout
	case "/dev/stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("path %q: %v", path, err)
		}
		w = f
	}
	s := &sink{w: w}
	sinks[path] = s
	return s, nil
}

func (s *sink) write(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.w, line)
}
