package tracestore

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	otlptrace "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// maxBody bounds an ingested request body.
const maxBody = 16 << 20

// Register mounts the ingest and query endpoints on mux.
func (s *Store) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v2/spans", func(w http.ResponseWriter, r *http.Request) {
		var spans []Span
		if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&spans); err != nil {
			http.Error(w, "body must be a JSON array of Zipkin v2 spans: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.Add(spans)
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := &collectortrace.ExportTraceServiceRequest{}
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		switch ct {
		case "application/json":
			err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, req)
		case "application/x-protobuf", "application/protobuf":
			err = proto.Unmarshal(body, req)
		default:
			http.Error(w, "Content-Type must be application/x-protobuf or application/json", http.StatusUnsupportedMediaType)
			return
		}
		if err != nil {
			http.Error(w, "body is not an OTLP ExportTraceServiceRequest: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.Add(FromOTLP(req))
		resp := &collectortrace.ExportTraceServiceResponse{}
		if ct == "application/json" {
			b, _ := protojson.Marshal(resp)
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
			return
		}
		b, _ := proto.Marshal(resp)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(b)
	})
	mux.HandleFunc("GET /api/v2/services", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, nonNil(s.Services()))
	})
	mux.HandleFunc("GET /api/v2/spans", func(w http.ResponseWriter, r *http.Request) {
		svc := r.URL.Query().Get("serviceName")
		if svc == "" {
			http.Error(w, "serviceName is required", http.StatusBadRequest)
			return
		}
		writeJSON(w, nonNil(s.SpanNames(svc)))
	})
	mux.HandleFunc("GET /api/v2/traces", func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, s.Traces(q))
	})
	mux.HandleFunc("GET /api/v2/trace/{id}", func(w http.ResponseWriter, r *http.Request) {
		spans := s.Trace(r.PathValue("id"))
		if spans == nil {
			http.Error(w, "trace not found", http.StatusNotFound)
			return
		}
		writeJSON(w, spans)
	})
}

// parseQuery reads Zipkin's query parameters; endTs and lookback are
// milliseconds, minDuration microseconds.
func parseQuery(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{ServiceName: v.Get("serviceName"), SpanName: v.Get("spanName")}
	num := func(name string) (int64, error) {
		s := v.Get(name)
		if s == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s must be a non-negative integer, not %q", name, s)
		}
		return n, nil
	}
	limit, err := num("limit")
	if err != nil {
		return q, err
	}
	endTs, err := num("endTs")
	if err != nil {
		return q, err
	}
	lookback, err := num("lookback")
	if err != nil {
		return q, err
	}
	if q.MinDuration, err = num("minDuration"); err != nil {
		return q, err
	}
	q.Limit = int(limit)
	if endTs > 0 {
		q.EndTs = time.UnixMilli(endTs)
	}
	q.Lookback = time.Duration(lookback) * time.Millisecond
	return q, nil
}

// nonNil makes an empty list [] in JSON, as Zipkin answers, not null.
func nonNil(names []string) []string {
	if names == nil {
		return []string{}
	}
	return names
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// FromOTLP converts OTLP spans to Zipkin's model: service.name becomes the
// local endpoint, attributes become tags (values as strings), span kinds
// map to Zipkin's, and an error status becomes the "error" tag.
func FromOTLP(req *collectortrace.ExportTraceServiceRequest) []Span {
	var out []Span
	for _, rs := range req.GetResourceSpans() {
		service := "unknown_service"
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = anyString(kv.GetValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				z := Span{
					TraceID:       hex.EncodeToString(sp.GetTraceId()),
					ID:            hex.EncodeToString(sp.GetSpanId()),
					ParentID:      hex.EncodeToString(sp.GetParentSpanId()),
					Name:          sp.GetName(),
					Kind:          otlpKind(sp.GetKind()),
					Timestamp:     int64(sp.GetStartTimeUnixNano() / 1000),
					LocalEndpoint: &Endpoint{ServiceName: service},
				}
				if e, s := sp.GetEndTimeUnixNano(), sp.GetStartTimeUnixNano(); e > s {
					z.Duration = int64((e - s) / 1000)
				}
				for _, kv := range sp.GetAttributes() {
					if z.Tags == nil {
						z.Tags = map[string]string{}
					}
					z.Tags[kv.GetKey()] = anyString(kv.GetValue())
				}
				if sp.GetStatus().GetCode() == otlptrace.Status_STATUS_CODE_ERROR {
					if z.Tags == nil {
						z.Tags = map[string]string{}
					}
					z.Tags["error"] = orDefault(sp.GetStatus().GetMessage(), "true")
				}
				for _, ev := range sp.GetEvents() {
					z.Annotations = append(z.Annotations, Annotation{Timestamp: int64(ev.GetTimeUnixNano() / 1000), Value: ev.GetName()})
				}
				out = append(out, z)
			}
		}
	}
	return out
}

func otlpKind(k otlptrace.Span_SpanKind) string {
	switch k {
	case otlptrace.Span_SPAN_KIND_SERVER:
		return "SERVER"
	case otlptrace.Span_SPAN_KIND_CLIENT:
		return "CLIENT"
	case otlptrace.Span_SPAN_KIND_PRODUCER:
		return "PRODUCER"
	case otlptrace.Span_SPAN_KIND_CONSUMER:
		return "CONSUMER"
	}
	return ""
}

func anyString(v *commonv1.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonv1.AnyValue_StringValue:
		return x.StringValue
	case *commonv1.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonv1.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonv1.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case nil:
		return ""
	}
	b, _ := protojson.Marshal(v)
	return strings.TrimSpace(string(b))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
