// Package addons holds the observability add-ons for a Skein mesh, as
// Istio's samples/addons does: Prometheus configuration and Istio's alert
// rules, Grafana dashboards (mesh, service, workload) and Kubernetes
// manifests for both. The Go code only embeds the dashboards and lists
// their queries, so tests can check every query against a real Prometheus.
package addons

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

//go:embed dashboards/*.json
var dashboards embed.FS

// Dashboard is the part of a Grafana dashboard the checks read.
type Dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Variable is a dashboard template variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *Datasource     `json:"datasource"`
}

// Panel is one graph, stat or table.
type Panel struct {
	ID         int         `json:"id"`
	Title      string      `json:"title"`
	Datasource *Datasource `json:"datasource"`
	Targets    []Target    `json:"targets"`
}

// Datasource names the data source a panel or query reads.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Target is one PromQL query of a panel.
type Target struct {
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Datasource *Datasource `json:"datasource"`
}

// Dashboards parses every embedded dashboard, keyed by file name.
func Dashboards() (map[string]*Dashboard, error) {
	files, err := fs.Glob(dashboards, "dashboards/*.json")
	if err != nil {
		return nil, err
	}
	out := map[string]*Dashboard{}
	for _, f := range files {
		b, err := dashboards.ReadFile(f)
		if err != nil {
			return nil, err
		}
		d := &Dashboard{}
		if err := json.Unmarshal(b, d); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out[path.Base(f)] = d
	}
	return out, nil
}

// Query is one PromQL expression of a dashboard, named for error messages.
type Query struct {
	Where string // "<file> panel <id> \"<title>\" <refId>"
	Expr  string
}

// Queries lists every panel query of every dashboard, sorted by Where.
func Queries() ([]Query, error) {
	ds, err := Dashboards()
	if err != nil {
		return nil, err
	}
	var out []Query
	for file, d := range ds {
		for _, p := range d.Panels {
			for _, t := range p.Targets {
				out = append(out, Query{Where: fmt.Sprintf("%s panel %d %q %s", file, p.ID, p.Title, t.RefID), Expr: t.Expr})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Where < out[j].Where })
	return out, nil
}

// Expand replaces Grafana's template variables in expr with values (name
// without the $), as Grafana does before sending a query.
func Expand(expr string, values map[string]string) string {
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	// Longest first, so $service is not replaced inside $services.
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, n := range names {
		expr = strings.ReplaceAll(expr, "${"+n+"}", values[n])
		expr = strings.ReplaceAll(expr, "$"+n, values[n])
	}
	return expr
}
