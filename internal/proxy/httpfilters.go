package proxy

import "github.com/skein-mesh/skein/internal/proxy/filters"

// httpFilters lists every HTTP filter the proxy implements. Filters not
// registered here are NACKed by name.
func httpFilters() *filters.Registry {
	reg := filters.NewRegistry()
	return reg
}
