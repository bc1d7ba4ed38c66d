package nodemeta

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Metadata
		json string // ToStruct's output
	}{
		{
			name: "empty",
			in:   Metadata{Labels: map[string]string{}},
			json: `{}`,
		},
		{
			name: "local sidecar",
			in: Metadata{
				Name: "productpage-v1-x", Namespace: "bookinfo",
				Labels:      map[string]string{"app": "productpage", "version": "v1"},
				InstanceIPs: []string{"127.1.0.2"}, ServiceAccount: "bookinfo-productpage",
				WorkloadName: "productpage-v1", ClusterID: "Kubernetes",
				InterceptionMode: InterceptionNone, IstioVersion: "1.24.0", AppIP: "127.2.0.2",
			},
			json: `{"APP_IP":"127.2.0.2","CLUSTER_ID":"Kubernetes","INSTANCE_IPS":"127.1.0.2","INTERCEPTION_MODE":"NONE",` +
				`"ISTIO_VERSION":"1.24.0","LABELS":{"app":"productpage","version":"v1"},"NAME":"productpage-v1-x",` +
				`"NAMESPACE":"bookinfo","SERVICE_ACCOUNT":"bookinfo-productpage","WORKLOAD_NAME":"productpage-v1"}`,
		},
		{
			name: "two instance IPs, no labels",
			in:   Metadata{Namespace: "istio-system", InstanceIPs: []string{"10.0.0.1", "fd00::1"}, Labels: map[string]string{}},
			json: `{"INSTANCE_IPS":"10.0.0.1,fd00::1","NAMESPACE":"istio-system"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.in.ToStruct()
			var want structpb.Struct
			if err := protojson.Unmarshal([]byte(tc.json), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.AsMap(), want.AsMap()) {
				got, _ := protojson.Marshal(s)
				t.Errorf("ToStruct = %s, want %s", got, tc.json)
			}
			if back := FromStruct(s); !reflect.DeepEqual(back, tc.in) {
				t.Errorf("FromStruct(ToStruct(m)) = %+v, want %+v", back, tc.in)
			}
		})
	}
}

// TestFromStructTolerates: a peer or an older proxy may send other value
// types or nothing; that reads as empty, never a panic.
func TestFromStructTolerates(t *testing.T) {
	s, err := structpb.NewStruct(map[string]any{"NAMESPACE": 3.0, "LABELS": "app=x", "NAME": "p", "UNKNOWN": "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := Metadata{Name: "p", Labels: map[string]string{}}
	if got := FromStruct(s); !reflect.DeepEqual(got, want) {
		t.Errorf("FromStruct = %+v, want %+v", got, want)
	}
	if got := FromStruct(nil); !reflect.DeepEqual(got, Metadata{Labels: map[string]string{}}) {
		t.Errorf("FromStruct(nil) = %+v", got)
	}
}
