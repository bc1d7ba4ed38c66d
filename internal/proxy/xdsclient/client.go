// Package xdsclient is the proxy's ADS client. It opens one aggregated
// state-of-the-world stream to the control plane, subscribes to clusters and
// listeners (wildcard) and then to the endpoints and route configurations they
// reference, and hands each decoded, validated update to a Consumer. An update
// the Consumer refuses is NACKed and changes nothing; the last good
// configuration stays in force, also while the control plane is away.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Consumer installs accepted configuration.
type Consumer interface {
	// Apply installs the resources of typeURL found in next (the other types
	// in next are the ones already installed). It must install them
	// completely or return an error and change nothing: the error's text is
	// sent to the control plane as the NACK reason.
	Apply(typeURL string, next *Snapshot) error
}

// Options configure a Client.
type Options struct {
	// Address is the control plane's host:port.
	Address string
	// DialOptions carry the transport credentials (TLS trusting the mesh
	// root, as istio-agent dials istiod's 15012); nil dials plaintext.
	DialOptions []grpc.DialOption
	// TokenFile holds the workload token sent as `authorization: Bearer`
	// metadata on every stream (re-read each time, so a rotated token is
	// used); empty sends none.
	TokenFile string
	// Node identifies the proxy; sent on the first request of each type.
	Node     *corev3.Node
	Consumer Consumer
	Logger   *slog.Logger
	Stats    *stats.Store
	// InitialBackoff and MaxBackoff bound the reconnect delay (defaults 100 ms and 5 s).
	InitialBackoff, MaxBackoff time.Duration
}

// Client is an ADS client. Create it with New and start it with Run.
type Client struct {
	opts     Options
	log      *slog.Logger
	accepted atomic.Pointer[Snapshot]
	// subs are the names last sent per non-wildcard type (EDS, RDS) and
	// wanted the names currently needed; they differ only when nothing is
	// needed, which SotW cannot express (an empty list means wildcard). Both
	// are only touched by the goroutine running the stream.
	subs   map[string][]string
	wanted map[string][]string

	connected *stats.Gauge
	success   map[string]*stats.Counter
	rejected  map[string]*stats.Counter
}

// typeOrder is the order Envoy subscribes in; CDS and LDS are wildcards.
var typeOrder = []string{ClusterType, EndpointType, ListenerType, RouteType}

// New validates opts and returns a Client that has not connected yet.
func New(opts Options) (*Client, error) {
	if opts.Address == "" {
		return nil, errors.New("xdsclient: no control plane address")
	}
	if opts.Node.GetId() == "" {
		return nil, errors.New("xdsclient: node has no id")
	}
	if opts.Consumer == nil {
		return nil, errors.New("xdsclient: no consumer")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	c := &Client{
		opts:      opts,
		log:       opts.Logger.With("component", "xds", "controlPlane", opts.Address),
		subs:      map[string][]string{},
		wanted:    map[string][]string{},
		connected: opts.Stats.Gauge("control_plane.connected_state"),
		success:   map[string]*stats.Counter{},
		rejected:  map[string]*stats.Counter{},
	}
	for _, t := range typeOrder {
		prefix := statPrefix(t)
		c.success[t] = opts.Stats.Counter(prefix + ".update_success")
		c.rejected[t] = opts.Stats.Counter(prefix + ".update_rejected")
	}
	c.accepted.Store(emptySnapshot())
	return c, nil
}

// statPrefix follows Envoy's names for CDS and LDS (cluster_manager.cds.*,
// listener_manager.lds.*) and the same shape for EDS and RDS.
func statPrefix(typeURL string) string {
	switch typeURL {
	case ClusterType, EndpointType:
		return "cluster_manager." + shortType(typeURL)
	default:
		return "listener_manager." + shortType(typeURL)
	}
}

// Snapshot returns the configuration accepted so far (never nil).
func (c *Client) Snapshot() *Snapshot { return c.accepted.Load() }

// Connected reports whether a stream to the control plane is open.
func (c *Client) Connected() bool { return c.connected.Value() == 1 }

// xdsHTTP2Window is Envoy's default initial stream and connection window.
const xdsHTTP2Window = 256 << 20

// Run keeps a stream open until ctx ends, reconnecting with exponential
// backoff. It returns nil when ctx is cancelled.
func (c *Client) Run(ctx context.Context) error {
	creds := c.opts.DialOptions
	if creds == nil {
		creds = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(c.opts.Address, append(creds,
		// Envoy's default HTTP/2 windows for its xDS cluster: a large
		// RouteConfiguration then arrives without a WINDOW_UPDATE round
		// trip per 64 KB (gRPC-go's start).
		grpc.WithInitialWindowSize(xdsHTTP2Window), grpc.WithInitialConnWindowSize(xdsHTTP2Window),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  c.opts.InitialBackoff,
				Multiplier: 2,
				Jitter:     0.2,
				MaxDelay:   c.opts.MaxBackoff,
			},
			MinConnectTimeout: 2 * time.Second,
		}))...)
	if err != nil {
		return fmt.Errorf("xdsclient: %w", err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)

	delay := c.opts.InitialBackoff
	for {
		gotResponse, err := c.runStream(ctx, ads)
		c.connected.Set(0)
		if ctx.Err() != nil {
			return nil
		}
		if gotResponse {
			delay = c.opts.InitialBackoff
		}
		// A lost stream is worth a warning; a control plane that is not up
		// yet only once per maximum backoff.
		level := slog.LevelDebug
		if gotResponse || delay == c.opts.MaxBackoff {
			level = slog.LevelWarn
		}
		c.log.Log(ctx, level, "xDS stream ended, keeping last good config", "error", err, "retryIn", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, c.opts.MaxBackoff)
	}
}

// stream is the per-connection state.
type stream struct {
	ads      discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	sendMu   sync.Mutex // grpc streams allow one sender at a time
	nodeSent map[string]bool
	nonce    map[string]string
	// rejectedVersion and nackDelay slow down a server that re-sends the
	// same bad version right after our NACK.
	rejectedVersion map[string]string
	nackDelay       map[string]time.Duration
}

func (c *Client) runStream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (gotResponse bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.opts.TokenFile != "" {
		b, err := os.ReadFile(c.opts.TokenFile)
		if err != nil {
			return false, fmt.Errorf("workload token: %w", err)
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(string(b)))
	}
	s, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	st := &stream{
		ads:             s,
		nodeSent:        map[string]bool{},
		nonce:           map[string]string{},
		rejectedVersion: map[string]string{},
		nackDelay:       map[string]time.Duration{},
	}
	// Start from scratch on every stream (empty version_info): a restarted
	// control plane may reuse version strings for different content. Equal
	// resources are recognised on arrival, so nothing churns.
	for _, t := range typeOrder {
		if t == ClusterType || t == ListenerType || len(c.subs[t]) > 0 {
			if err := c.send(st, t, "", "", c.subs[t], nil); err != nil {
				return false, err
			}
		}
	}
	c.connected.Set(1)
	c.log.Info("xDS stream open")
	for {
		resp, err := s.Recv()
		if err != nil {
			return gotResponse, err
		}
		gotResponse = true
		if err := c.handle(ctx, st, resp); err != nil {
			return gotResponse, err
		}
	}
}

// send writes one DiscoveryRequest for typeURL; it is safe for concurrent use.
func (c *Client) send(st *stream, typeURL, version, nonce string, names []string, nack error) error {
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl:       typeURL,
		VersionInfo:   version,
		ResponseNonce: nonce,
		ResourceNames: names,
	}
	if nack != nil {
		req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: nack.Error()}
	}
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	if !st.nodeSent[typeURL] {
		req.Node = c.opts.Node
	}
	if err := st.ads.Send(req); err != nil {
		return err
	}
	st.nodeSent[typeURL] = true
	return nil
}

func (c *Client) handle(ctx context.Context, st *stream, resp *discoveryv3.DiscoveryResponse) error {
	t := resp.GetTypeUrl()
	st.sendMu.Lock()
	st.nonce[t] = resp.GetNonce()
	st.sendMu.Unlock()
	prev := c.accepted.Load()
	next, err := c.candidate(prev, resp)
	if err == nil {
		err = c.opts.Consumer.Apply(t, next)
	}
	if err != nil {
		c.rejected[t].Inc()
		c.log.Warn("rejecting xDS update", "type", shortType(t), "version", resp.GetVersionInfo(), "reason", err)
		delay := time.Duration(0)
		if st.rejectedVersion[t] == resp.GetVersionInfo() {
			delay = min(max(2*st.nackDelay[t], 500*time.Millisecond), c.opts.MaxBackoff)
		}
		st.rejectedVersion[t], st.nackDelay[t] = resp.GetVersionInfo(), delay
		nonce, names := resp.GetNonce(), c.subs[t]
		if delay == 0 {
			return c.send(st, t, prev.Versions[t], nonce, names, err)
		}
		time.AfterFunc(delay, func() {
			st.sendMu.Lock()
			current := st.nonce[t] == nonce
			st.sendMu.Unlock()
			if ctx.Err() == nil && current {
				_ = c.send(st, t, prev.Versions[t], nonce, names, err) // a failed send ends the stream's Recv too
			}
		})
		return nil
	}
	c.accepted.Store(next)
	c.success[t].Inc()
	delete(st.rejectedVersion, t)
	delete(st.nackDelay, t)
	level := slog.LevelInfo
	if t == EndpointType {
		level = slog.LevelDebug // endpoints churn; clusters, listeners and routes are worth a line
	}
	c.log.Log(ctx, level, "applied xDS update", "type", shortType(t), "version", resp.GetVersionInfo(), "resources", len(resp.GetResources()))
	if err := c.send(st, t, resp.GetVersionInfo(), resp.GetNonce(), c.subs[t], nil); err != nil {
		return err
	}
	// New clusters or listeners may change what we need from EDS and RDS.
	switch t {
	case ClusterType:
		return c.resubscribe(st, EndpointType, edsNames(next.Clusters))
	case ListenerType:
		return c.resubscribe(st, RouteType, rdsNames(next.Listeners))
	}
	return nil
}

// resubscribe sends a new subscription for typeURL when names changed. An
// empty list is not sent: in SotW an empty list means wildcard. Resources
// for names no longer wanted are dropped at the next update of the type.
func (c *Client) resubscribe(st *stream, typeURL string, names []string) error {
	c.wanted[typeURL] = names
	if len(names) == 0 || slices.Equal(names, c.subs[typeURL]) {
		return nil
	}
	c.subs[typeURL] = names
	c.log.Debug("xDS subscription changed", "type", shortType(typeURL), "names", names)
	st.sendMu.Lock()
	nonce := st.nonce[typeURL]
	st.sendMu.Unlock()
	return c.send(st, typeURL, c.accepted.Load().Versions[typeURL], nonce, names, nil)
}

// candidate decodes resp and builds the snapshot that would result from it.
func (c *Client) candidate(prev *Snapshot, resp *discoveryv3.DiscoveryResponse) (*Snapshot, error) {
	t, version, now := resp.GetTypeUrl(), resp.GetVersionInfo(), time.Now()
	subscribed := map[string]bool{}
	for _, n := range c.wanted[t] {
		subscribed[n] = true
	}
	next := prev.clone()
	next.Versions[t] = version
	next.Updated[t] = now
	switch t {
	case ClusterType:
		got, err := decode(t, resp.GetResources(), newCluster, clusterName)
		if err != nil {
			return nil, err
		}
		next.Clusters = merge(prev.Clusters, got, true, nil, version, now)
	case ListenerType:
		got, err := decode(t, resp.GetResources(), newListener, listenerName)
		if err != nil {
			return nil, err
		}
		next.Listeners = merge(prev.Listeners, got, true, nil, version, now)
	case EndpointType:
		got, err := decode(t, resp.GetResources(), newEndpoint, endpointName)
		if err != nil {
			return nil, err
		}
		next.Endpoints = merge(prev.Endpoints, got, false, subscribed, version, now)
	case RouteType:
		got, err := decode(t, resp.GetResources(), newRoute, routeName)
		if err != nil {
			return nil, err
		}
		next.Routes = merge(prev.Routes, got, false, subscribed, version, now)
	default:
		return nil, fmt.Errorf("unsupported resource type %q", t)
	}
	return next, nil
}

// Synced reports whether the first CDS and LDS updates were accepted and
// every endpoint and route configuration they reference has arrived.
func (c *Client) Synced() bool {
	s := c.accepted.Load()
	if _, ok := s.Versions[ClusterType]; !ok {
		return false
	}
	if _, ok := s.Versions[ListenerType]; !ok {
		return false
	}
	for _, n := range edsNames(s.Clusters) {
		if _, ok := s.Endpoints[n]; !ok {
			return false
		}
	}
	for _, n := range rdsNames(s.Listeners) {
		if _, ok := s.Routes[n]; !ok {
			return false
		}
	}
	return true
}
