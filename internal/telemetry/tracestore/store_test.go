package tracestore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"
	otlptrace "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func server(t *testing.T, s *Store) string {
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func do(t *testing.T, method, url, ctype string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestZipkinIngestAndQuery(t *testing.T) {
	s := New(0)
	url := server(t, s)
	now := time.Now().UnixMicro()
	spans := `[
	 {"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312","name":"Productpage:9080/*","kind":"SERVER","timestamp":` + fmt.Sprint(now) + `,"duration":900,"localEndpoint":{"serviceName":"Istio-Ingressgateway.istio-system"},"tags":{"http.status_code":"200"}},
	 {"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"b2fb4a1d1a96d312","parentId":"a2fb4a1d1a96d312","name":"details:9080/*","kind":"SERVER","timestamp":` + fmt.Sprint(now+100) + `,"duration":300,"localEndpoint":{"serviceName":"details.bookinfo"}},
	 {"traceId":"48485a3953bb6125","id":"c2fb4a1d1a96d312","name":"old","timestamp":` + fmt.Sprint(now-3600e6) + `,"duration":50,"localEndpoint":{"serviceName":"details.bookinfo"}}
	]`
	if code, body := do(t, "POST", url+"/api/v2/spans", "application/json", []byte(spans)); code != http.StatusAccepted {
		t.Fatalf("POST /api/v2/spans: %d %s", code, body)
	}
	if code, _ := do(t, "POST", url+"/api/v2/spans", "application/json", []byte(`{"not":"a list"}`)); code != http.StatusBadRequest {
		t.Errorf("bad body: status %d, want 400", code)
	}

	cases := []struct {
		name, path string
		want       string
	}{
		{"services, lowercased and sorted", "/api/v2/services", `["details.bookinfo","istio-ingressgateway.istio-system"]`},
		{"span names", "/api/v2/spans?serviceName=details.bookinfo", `["details:9080/*","old"]`},
		{"trace by id", "/api/v2/trace/463ac35c9f6413ad48485a3953bb6124", `a2fb4a1d1a96d312,b2fb4a1d1a96d312`},
		{"64-bit id padded", "/api/v2/trace/48485a3953bb6125", `c2fb4a1d1a96d312`},
		{"traces by service, newest first", "/api/v2/traces?serviceName=details.bookinfo", `[a2fb4a1d1a96d312,b2fb4a1d1a96d312][c2fb4a1d1a96d312]`},
		{"lookback excludes old traces", "/api/v2/traces?serviceName=details.bookinfo&lookback=60000", `[a2fb4a1d1a96d312,b2fb4a1d1a96d312]`},
		{"limit", "/api/v2/traces?limit=1", `[a2fb4a1d1a96d312,b2fb4a1d1a96d312]`},
		{"span name filter", "/api/v2/traces?serviceName=istio-ingressgateway.istio-system&spanName=productpage:9080/*", `[a2fb4a1d1a96d312,b2fb4a1d1a96d312]`},
		{"min duration", "/api/v2/traces?minDuration=1000", `[]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, "GET", url+tc.path, "", nil)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			if got := summarize(t, body); got != tc.want {
				t.Errorf("GET %s = %s, want %s (body %s)", tc.path, got, tc.want, body)
			}
		})
	}
	if code, _ := do(t, "GET", url+"/api/v2/trace/ffffffffffffffff", "", nil); code != http.StatusNotFound {
		t.Errorf("unknown trace: status %d, want 404", code)
	}
	if code, _ := do(t, "GET", url+"/api/v2/traces?limit=x", "", nil); code != http.StatusBadRequest {
		t.Errorf("bad limit: status %d, want 400", code)
	}
}

// summarize renders a response compactly: string lists as JSON, a trace
// as its span ids, a list of traces as bracketed span ids.
func summarize(t *testing.T, body []byte) string {
	var names []string
	if json.Unmarshal(body, &names) == nil {
		b, _ := json.Marshal(names)
		return string(b)
	}
	ids := func(spans []Span) string {
		out := ""
		for i, s := range spans {
			if i > 0 {
				out += ","
			}
			out += s.ID
		}
		return out
	}
	var trace []Span
	if json.Unmarshal(body, &trace) == nil {
		return ids(trace)
	}
	var traces [][]Span
	if err := json.Unmarshal(body, &traces); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	out := ""
	for _, tr := range traces {
		out += "[" + ids(tr) + "]"
	}
	return out
}

func otlpRequest() *collectortrace.ExportTraceServiceRequest {
	return &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*otlptrace.ResourceSpans{{
		Resource: &resourcev1.Resource{Attributes: []*commonv1.KeyValue{{Key: "service.name", Value: &commonv1.AnyValue{Value: &commonv1.AnyValue_StringValue{StringValue: "reviews.bookinfo"}}}}},
		ScopeSpans: []*otlptrace.ScopeSpans{{Spans: []*otlptrace.Span{{
			TraceId: bytes.Repeat([]byte{0xab}, 16), SpanId: bytes.Repeat([]byte{0x01}, 8), ParentSpanId: bytes.Repeat([]byte{0x02}, 8),
			Name: "ratings:9080/*", Kind: otlptrace.Span_SPAN_KIND_CLIENT,
			StartTimeUnixNano: uint64(time.Now().UnixNano()), EndTimeUnixNano: uint64(time.Now().Add(1500 * time.Microsecond).UnixNano()),
			Attributes: []*commonv1.KeyValue{{Key: "http.status_code", Value: &commonv1.AnyValue{Value: &commonv1.AnyValue_IntValue{IntValue: 503}}}},
			Status:     &otlptrace.Status{Code: otlptrace.Status_STATUS_CODE_ERROR},
		}}}},
	}}}
}

func TestOTLPIngest(t *testing.T) {
	pb, _ := proto.Marshal(otlpRequest())
	js, _ := protojson.Marshal(otlpRequest())
	for _, tc := range []struct {
		ctype string
		body  []byte
	}{{"application/x-protobuf", pb}, {"application/json", js}} {
		t.Run(tc.ctype, func(t *testing.T) {
			s := New(0)
			url := server(t, s)
			if code, body := do(t, "POST", url+"/v1/traces", tc.ctype, tc.body); code != http.StatusOK {
				t.Fatalf("POST /v1/traces: %d %s", code, body)
			}
			spans := s.Trace("abababababababababababababababab")
			if len(spans) != 1 {
				t.Fatalf("got %d spans", len(spans))
			}
			sp := spans[0]
			if sp.ID != "0101010101010101" || sp.ParentID != "0202020202020202" || sp.Kind != "CLIENT" || sp.Duration != 1500 ||
				sp.LocalEndpoint.ServiceName != "reviews.bookinfo" || sp.Tags["http.status_code"] != "503" || sp.Tags["error"] != "true" {
				t.Errorf("span = %+v", sp)
			}
		})
	}
	s := New(0)
	if code, _ := do(t, "POST", server(t, s)+"/v1/traces", "text/plain", pb); code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: status %d, want 415", code)
	}
}

func TestEvictsLeastRecentlyUpdatedTraces(t *testing.T) {
	s := New(5)
	add := func(trace string, n int) {
		var spans []Span
		for i := range n {
			spans = append(spans, Span{TraceID: trace, ID: fmt.Sprintf("%016x", i+1)})
		}
		s.Add(spans)
	}
	add("00000000000000000000000000000001", 2)
	add("00000000000000000000000000000002", 2)
	add("00000000000000000000000000000001", 1) // trace 1 is now the most recent
	add("00000000000000000000000000000003", 2) // 7 spans > 5: evict trace 2
	if s.Trace("00000000000000000000000000000002") != nil || len(s.Trace("00000000000000000000000000000001")) != 3 || s.Len() != 5 {
		t.Errorf("after eviction: trace2=%v trace1=%d spans, total %d", s.Trace("00000000000000000000000000000002"), len(s.Trace("00000000000000000000000000000001")), s.Len())
	}
}
