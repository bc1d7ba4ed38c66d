package accesslog

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skein-mesh/skein/internal/proxy/filters"
	"github.com/skein-mesh/skein/internal/proxy/router"
)

// istioText is Istio's default text format.
const istioText = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%` + "\n"

func info() *filters.RequestInfo {
	r := httptest.NewRequest("POST", "http://reviews:9080/reviews/0?x=1", nil)
	r.Header.Set("User-Agent", "curl/8")
	r.Header.Set("X-Request-Id", "3f1c")
	r.Header.Set("X-Envoy-Original-Path", "/api/reviews/0")
	resp := http.Header{}
	resp.Set("X-Envoy-Upstream-Service-Time", "4")
	return &filters.RequestInfo{
		Request: &filters.Request{HTTP: r, Route: &router.Decision{RouteName: "default"}, Conn: &filters.Conn{
			Source: netip.MustParseAddrPort("127.1.0.2:40000"), Destination: netip.MustParseAddrPort("127.1.0.4:9080"),
			TLS: true, SNI: "outbound_.9080_._.reviews.bookinfo.svc.cluster.local", PeerPrincipal: "cluster.local/ns/bookinfo/sa/productpage"}},
		Start:          time.Date(2026, 11, 25, 4, 5, 6, 789e6, time.UTC),
		Duration:       5 * time.Millisecond,
		Status:         200,
		ResponseFlags:  "-",
		ResponseHeader: resp,
		Cluster:        "inbound|9080||",
		UpstreamHost:   "127.2.0.4:9080",
		BytesReceived:  12,
		BytesSent:      358,
		Attempts:       1,
	}
}

func TestTextFormats(t *testing.T) {
	cases := []struct {
		name, format, want string
	}{
		{"istio default", istioText,
			`[2026-11-25T04:05:06.789Z] "POST /api/reviews/0 HTTP/1.1" 200 - via_upstream - "-" 12 358 5 4 "-" "curl/8" "3f1c" "reviews:9080" "127.2.0.4:9080" inbound|9080|| - 127.1.0.4:9080 127.1.0.2:40000 outbound_.9080_._.reviews.bookinfo.svc.cluster.local default` + "\n"},
		{"alternative header, truncation, percent", `%REQ(X-MISSING?:PATH):8% %RESP(X-NONE)% 100%% %DOWNSTREAM_PEER_URI_SAN% %UPSTREAM_REQUEST_ATTEMPT_COUNT%`,
			`/reviews - 100% spiffe://cluster.local/ns/bookinfo/sa/productpage 1`},
		{"start time format", `%START_TIME(%Y/%m/%d %H:%M:%S.%3f)%`, `2026/11/25 04:05:06.789`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := parseTemplate(tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if got := tmpl.render(info()); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestUnknownCommandsAreRejected(t *testing.T) {
	for _, f := range []string{"%NO_SUCH_THING%", "%REQ%", "%PROTOCOL(x)%", "%RESPONSE_CODE", "%REQ(a):x%", "%START_TIME(%q)%"} {
		if _, err := parseTemplate(f); err == nil {
			t.Errorf("parseTemplate(%q) accepted", f)
		}
	}
}

func fileLog(t *testing.T, path string, format *corev3.SubstitutionFormatString) *accesslogv3.AccessLog {
	a, err := anypb.New(&filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: format}})
	if err != nil {
		t.Fatal(err)
	}
	return &accesslogv3.AccessLog{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: a}}
}

func TestFileLoggerWritesJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	js, _ := structpb.NewStruct(map[string]any{
		"response_code": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%", "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
		"missing": "%REQ(X-NOPE)%", "mixed": "code=%RESPONSE_CODE%",
	})
	logs, err := New([]*accesslogv3.AccessLog{fileLog(t, path, &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: js}})})
	if err != nil {
		t.Fatal(err)
	}
	logs.OnComplete(info())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil || !strings.HasSuffix(string(b), "}\n") {
		t.Fatalf("line %q: %v", b, err)
	}
	// A value that is one command keeps its type; absent is null.
	want := map[string]any{"response_code": 200.0, "path": "/reviews/0?x=1", "upstream_service_time": "4", "missing": nil, "mixed": "code=200"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}

func TestNewRejectsWhatIsNotImplemented(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	other, _ := anypb.New(&corev3.Http1ProtocolOptions{})
	cases := []struct {
		name string
		cfg  *accesslogv3.AccessLog
		want string
	}{
		{"filter", &accesslogv3.AccessLog{Name: "f", Filter: &accesslogv3.AccessLogFilter{}, ConfigType: fileLog(t, path, nil).ConfigType}, "field filter is not supported"},
		{"unknown logger", &accesslogv3.AccessLog{Name: "x", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: other}}, "is not supported"},
		{"unknown command", fileLog(t, path, &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormat{TextFormat: "%BOGUS%"}}), "%BOGUS%"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New([]*accesslogv3.AccessLog{tc.cfg})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
