package attribute

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Expr
		wantErr string
	}{
		{`'literal'`, Expr{Literal: "literal", IsLiteral: true}, ""},
		{` "double" `, Expr{Literal: "double", IsLiteral: true}, ""},
		{`request.host`, Expr{Attribute: "request.host"}, ""},
		{`string(destination.port)`, Expr{Attribute: "destination.port"}, ""},
		{`string( response.code )`, Expr{Attribute: "response.code"}, ""},
		{`request.headers['x-user']`, Expr{Attribute: "request.headers", Key: "x-user"}, ""},
		{`response.trailers["grpc-message"]`, Expr{Attribute: "response.trailers", Key: "grpc-message"}, ""},
		{`request.headers[x-user]`, Expr{}, "want request.headers['name']"},
		{`request.headers['']`, Expr{}, "want request.headers['name']"},
		{`request.headers['a'] + 'b'`, Expr{}, "want request.headers['name']"},
		{`upstream_peer.labels['app'].value`, Expr{}, "is not supported"},
		{`'it\'s'`, Expr{}, "is not supported"},
		{`request.host == 'x' ? 'a' : 'b'`, Expr{}, "is not supported"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse = %+v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Parse = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
