package apiclient

import (
	"context"
	"net/http"
	"time"

	"github.com/skein-mesh/skein/internal/xdsserver"
)

// ProxyStatus lists the proxies connected to the control plane with the
// xDS sync state of each resource type (GET /debug/syncz): what
// `skein proxy-status` and the dashboard show.
func (c *Client) ProxyStatus(ctx context.Context) ([]xdsserver.ProxyStatus, error) {
	var out []xdsserver.ProxyStatus
	if err := c.do(ctx, http.MethodGet, "/debug/syncz", nil, &out, 10*time.Second); err != nil {
		return nil, err
	}
	return out, nil
}
