package config

import (
	"errors"
	"strings"
	"testing"
)

const vsHeader = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n"

// TestErrorMessages pins the text a user sees for each class of mistake:
// where (file, document, resource, field path) and what.
func TestErrorMessages(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string // each must appear in the joined error
	}{
		{
			name:  "YAML syntax error reports the file's line",
			input: gw("a") + "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n bad: indentation\n",
			want:  []string{"test.yaml (document 2): YAML syntax error: line 13: did not find expected key"},
		},
		{
			name:  "duplicate key",
			input: "apiVersion: v1\nkind: Namespace\nkind: Namespace\nmetadata: {name: x}\n",
			want:  []string{"test.yaml (document 1): YAML syntax error:", `"kind" already set in map`},
		},
		{
			name:  "missing apiVersion",
			input: "kind: Gateway\nmetadata: {name: a}\n",
			want:  []string{"test.yaml (document 1): Gateway/a apiVersion: required field is missing"},
		},
		{
			name:  "missing kind",
			input: "apiVersion: networking.istio.io/v1\nmetadata: {name: a}\n",
			want:  []string{"test.yaml (document 1): kind: required field is missing"},
		},
		{
			name:  "missing metadata.name",
			input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {namespace: x}\nspec: {}\n",
			want:  []string{"test.yaml (document 1): Gateway metadata.name: required field is missing"},
		},
		{
			name:  "missing metadata.name of a Kubernetes kind",
			input: "apiVersion: v1\nkind: Service\nspec: {}\n",
			want:  []string{"test.yaml (document 1): Service metadata.name: required field is missing"},
		},
		{
			name:  "unknown apiVersion",
			input: strings.Replace(vsHeader, "networking.istio.io/v1", "networking.istio.io/v2", 1),
			want: []string{`VirtualService/reviews apiVersion: unknown apiVersion "networking.istio.io/v2" for kind VirtualService ` +
				`(want one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3)`},
		},
		{
			name:  "unknown kind",
			input: strings.Replace(vsHeader, "kind: VirtualService", "kind: VirtualSevice", 1),
			want:  []string{`VirtualSevice/reviews kind: unknown kind "VirtualSevice" in apiVersion "networking.istio.io/v1" (did you mean "VirtualService"?)`},
		},
		{
			name:  "unknown Istio field, with its path",
			input: vsHeader + "  http:\n  - route:\n    - destination:\n        hots: reviews\n",
			want:  []string{`test.yaml (document 1): VirtualService/reviews spec.http[0].route[0].destination.hots: unknown field "hots" (did you mean "host"?)`},
		},
		{
			name:  "unknown top-level field",
			input: vsHeader + "  http: []\nspecs: {}\n",
			want:  []string{`VirtualService/reviews specs: unknown field "specs" (did you mean "spec"?)`},
		},
		{
			name:  "unknown metadata field",
			input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: a\n  label: {app: x}\n",
			want:  []string{`Gateway/a metadata.label: unknown field "label" (did you mean "labels"?)`},
		},
		{
			name:  "wrong type",
			input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a}\nspec:\n  servers:\n  - port: {number: eighty, protocol: HTTP}\n    hosts: '*'\n",
			want: []string{
				`Gateway/a spec.servers[0].port.number: expected an integer, got string "eighty"`,
				`Gateway/a spec.servers[0].hosts: expected a list, got string "*"`,
			},
		},
		{
			name:  "invalid enum value",
			input: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec:\n  mtls: {mode: STRIKT}\n",
			want:  []string{`PeerAuthentication/a spec.mtls.mode: invalid value "STRIKT" (want one of UNSET, DISABLE, PERMISSIVE, STRICT)`},
		},
		{
			name:  "invalid duration",
			input: vsHeader + "  http:\n  - route:\n    - destination: {host: reviews}\n    timeout: 10 seconds\n    retries: {attempts: 3, perTryTimeout: 3}\n",
			want: []string{
				`VirtualService/reviews spec.http[0].timeout: invalid duration "10 seconds": write a number with a unit, like "10s", "100ms" or "5m"`,
				`VirtualService/reviews spec.http[0].retries.perTryTimeout: invalid duration number 3: write it as a string with a unit`,
			},
		},
		{
			name:  "invalid regex",
			input: vsHeader + "  http:\n  - match:\n    - uri: {regex: \"/api/(v1\"}\n    route:\n    - destination: {host: reviews}\n",
			want:  []string{`VirtualService/reviews spec.http[0].match[0].uri.regex: invalid regex "/api/(v1" (RE2 syntax): missing closing ): ` + "`/api/(v1`"},
		},
		{
			name:  "two match types",
			input: vsHeader + "  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n    route:\n    - destination: {host: reviews}\n",
			want:  []string{`spec.http[0].match[0].uri.prefix: only one of exact, prefix, regex may be set ("exact" is set too)`},
		},
		{
			name:  "Kubernetes unknown field, with its path",
			input: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      contaners: []\n",
			want:  []string{`test.yaml (document 1): Deployment/d spec.template.spec.contaners: unknown field "contaners" (did you mean "containers"?)`},
		},
		{
			name:  "Kubernetes field names are case-sensitive",
			input: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - Port: 80\n",
			want:  []string{`Service/s spec.ports[0].Port: unknown field "Port" (did you mean "port"?)`},
		},
		{
			name:  "Kubernetes wrong type",
			input: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: \"80\"\n",
			want:  []string{`Service/s spec.ports[0].port: expected an integer, got string "80"`},
		},
		{
			name:  "semantic error from Validate",
			input: vsHeader + "  http:\n  - route:\n    - destination: {subset: v1}\n",
			want:  []string{`test.yaml (document 1): VirtualService/reviews spec.http[0].route[0].destination.host: required field is missing`},
		},
		{
			name:  "not a mapping",
			input: "- a\n- b\n",
			want:  []string{`test.yaml (document 1): expected a resource (a mapping with apiVersion, kind, metadata), got a list`},
		},
		{
			name: "every error is reported, not only the first",
			input: vsHeader + "  http:\n  - route:\n    - destination: {hots: reviews}\n---\n" +
				"apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers: []\n",
			want: []string{
				`test.yaml (document 1): VirtualService/reviews spec.http[0].route[0].destination.hots: unknown field`,
				`test.yaml (document 2): Gateway/gw spec.servers: a Gateway must have at least one server`,
			},
		},
		{
			name:  "List items are located",
			input: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n  spec: {portz: []}\n",
			want:  []string{`test.yaml (document 1): Service/s items[0].spec.portz: unknown field "portz" (did you mean "ports"?)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, _, err := loadString(t, tt.input, "")
			if err == nil {
				t.Fatalf("expected an error, loaded %d objects", len(objs))
			}
			if objs != nil {
				t.Errorf("objects returned alongside an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain\n  %s\ngot:\n  %s", w, err)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error is not a *FieldError: %T", err)
			}
		})
	}
}

func TestDecodeErrorsAreFieldErrors(t *testing.T) {
	_, err := Decode(map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": "a"}, "spec": map[string]any{"servrs": []any{}}})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "spec.servrs" || fe.Kind != "Gateway" || fe.Name != "a" {
		t.Fatalf("err = %#v", err)
	}
}
