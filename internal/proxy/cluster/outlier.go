package cluster

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/skein-mesh/skein/internal/proxy/internal/protocheck"
	"github.com/skein-mesh/skein/internal/proxy/stats"
)

// Envoy's outlier detection defaults.
const (
	defaultODInterval        = 10 * time.Second
	defaultBaseEjection      = 30 * time.Second
	defaultMaxEjection       = 300 * time.Second
	defaultMaxEjectionPct    = 10
	defaultConsecutiveErrors = 5
)

// outlierFields: success-rate and failure-percentage detection are not
// implemented, so their enforcing_* must be 0 (checked in parseOutlier).
var outlierFields = protocheck.Fields(&clusterv3.OutlierDetection{},
	"consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent",
	"enforcing_consecutive_5xx", "enforcing_success_rate", "consecutive_gateway_failure",
	"enforcing_consecutive_gateway_failure", "split_external_local_origin_errors",
	"consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure",
	"enforcing_local_origin_success_rate", "enforcing_failure_percentage",
	"enforcing_failure_percentage_local_origin", "max_ejection_time")

// Result is what one upstream attempt tells outlier detection about a host.
type Result int

// Results, as Envoy's outlier detector distinguishes them.
const (
	// ResultResponse is an HTTP response; its status code matters.
	ResultResponse Result = iota
	// ResultConnectFailed is a failure to connect (local origin).
	ResultConnectFailed
	// ResultTimeout is an upstream timeout (local origin).
	ResultTimeout
	// ResultReset is a reset before a response (local origin).
	ResultReset
)

type outlierConfig struct {
	interval, baseEjection, maxEjection time.Duration
	maxEjectionPct                      int
	consec5xx, enforce5xx               uint32
	consecGateway, enforceGateway       uint32
	splitLocal                          bool
	consecLocal, enforceLocal           uint32
}

func uint32Or(v interface{ GetValue() uint32 }, isNil bool, def uint32) uint32 {
	if isNil {
		return def
	}
	return v.GetValue()
}

func parseOutlier(od *clusterv3.OutlierDetection) (*outlierConfig, error) {
	if od == nil {
		return nil, nil
	}
	if err := outlierFields.Check(od); err != nil {
		return nil, err
	}
	// Unset, enforcing_success_rate means 100 in Envoy: success-rate
	// detection would be on, and this proxy does not implement it.
	if od.EnforcingSuccessRate == nil || od.GetEnforcingSuccessRate().GetValue() != 0 {
		return nil, fmt.Errorf("enforcing_success_rate must be 0: success-rate outlier detection is not supported yet")
	}
	if od.GetEnforcingLocalOriginSuccessRate() != nil && od.GetEnforcingLocalOriginSuccessRate().GetValue() != 0 ||
		od.GetSplitExternalLocalOriginErrors() && od.EnforcingLocalOriginSuccessRate == nil {
		return nil, fmt.Errorf("enforcing_local_origin_success_rate must be 0: success-rate outlier detection is not supported yet")
	}
	if od.GetEnforcingFailurePercentage().GetValue() != 0 || od.GetEnforcingFailurePercentageLocalOrigin().GetValue() != 0 {
		return nil, fmt.Errorf("failure-percentage outlier detection is not supported yet")
	}
	dur := func(d interface{ AsDuration() time.Duration }, isNil bool, def time.Duration) time.Duration {
		if isNil || d.AsDuration() <= 0 {
			return def
		}
		return d.AsDuration()
	}
	c := &outlierConfig{
		interval:       dur(od.GetInterval(), od.Interval == nil, defaultODInterval),
		baseEjection:   dur(od.GetBaseEjectionTime(), od.BaseEjectionTime == nil, defaultBaseEjection),
		maxEjection:    dur(od.GetMaxEjectionTime(), od.MaxEjectionTime == nil, defaultMaxEjection),
		maxEjectionPct: int(uint32Or(od.GetMaxEjectionPercent(), od.MaxEjectionPercent == nil, defaultMaxEjectionPct)),
		consec5xx:      uint32Or(od.GetConsecutive_5Xx(), od.Consecutive_5Xx == nil, defaultConsecutiveErrors),
		enforce5xx:     uint32Or(od.GetEnforcingConsecutive_5Xx(), od.EnforcingConsecutive_5Xx == nil, 100),
		consecGateway:  uint32Or(od.GetConsecutiveGatewayFailure(), od.ConsecutiveGatewayFailure == nil, defaultConsecutiveErrors),
		enforceGateway: uint32Or(od.GetEnforcingConsecutiveGatewayFailure(), od.EnforcingConsecutiveGatewayFailure == nil, 0),
		splitLocal:     od.GetSplitExternalLocalOriginErrors(),
		consecLocal:    uint32Or(od.GetConsecutiveLocalOriginFailure(), od.ConsecutiveLocalOriginFailure == nil, defaultConsecutiveErrors),
		enforceLocal:   uint32Or(od.GetEnforcingConsecutiveLocalOriginFailure(), od.EnforcingConsecutiveLocalOriginFailure == nil, 100),
	}
	c.maxEjection = max(c.maxEjection, c.baseEjection)
	return c, nil
}

// hostOutlier is one host's outlier state, kept by address so that it
// survives endpoint updates that keep the host.
type hostOutlier struct {
	ep                       *Endpoint
	consec5xx, consecGateway uint32
	consecLocal              uint32
	ejectedAt                time.Time
	ejections                int // Envoy's multiplier: grows per ejection, shrinks per healthy interval
}

// outlierDetector is Envoy's consecutive-errors detector: a host is ejected
// as soon as it reaches a threshold (if max_ejection_percent allows), and
// returned on the interval timer after base_ejection_time times the number
// of its ejections, capped at max_ejection_time.
type outlierDetector struct {
	cfg *outlierConfig
	now func() time.Time

	mu    sync.Mutex
	hosts map[string]*hostOutlier
	timer *time.Timer
	stop  bool

	st outlierStats
}

type outlierStats struct {
	active                         *stats.Gauge
	enforcedTotal, total, overflow *stats.Counter
	detected5xx, enforced5xx       *stats.Counter
	legacy5xx                      *stats.Counter
	detectedGw, enforcedGw         *stats.Counter
	detectedLocal, enforcedLocal   *stats.Counter
}

func newOutlierDetector(cfg *outlierConfig, store *stats.Store, prefix string, now func() time.Time) *outlierDetector {
	p := prefix + "outlier_detection."
	return &outlierDetector{cfg: cfg, now: now, hosts: map[string]*hostOutlier{}, st: outlierStats{
		active:        store.Gauge(p + "ejections_active"),
		enforcedTotal: store.Counter(p + "ejections_enforced_total"),
		total:         store.Counter(p + "ejections_total"),
		overflow:      store.Counter(p + "ejections_overflow"),
		detected5xx:   store.Counter(p + "ejections_detected_consecutive_5xx"),
		enforced5xx:   store.Counter(p + "ejections_enforced_consecutive_5xx"),
		legacy5xx:     store.Counter(p + "ejections_consecutive_5xx"),
		detectedGw:    store.Counter(p + "ejections_detected_consecutive_gateway_failure"),
		enforcedGw:    store.Counter(p + "ejections_enforced_consecutive_gateway_failure"),
		detectedLocal: store.Counter(p + "ejections_detected_consecutive_local_origin_failure"),
		enforcedLocal: store.Counter(p + "ejections_enforced_consecutive_local_origin_failure"),
	}}
}

// start arms the interval timer; stopTimer ends it for good.
func (d *outlierDetector) start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil || d.stop {
		return
	}
	d.timer = time.AfterFunc(d.cfg.interval, d.tick)
}

func (d *outlierDetector) tick() {
	d.sweep()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stop {
		d.timer.Reset(d.cfg.interval)
	}
}

func (d *outlierDetector) stopTimer() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stop = true
	if d.timer != nil {
		d.timer.Stop()
	}
}

// sync follows an endpoint update: new hosts start clean, kept hosts keep
// their state (and the new Endpoint objects their ejection), removed hosts
// are forgotten.
func (d *outlierDetector) sync(all []*Endpoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make(map[string]bool, len(all))
	for _, e := range all {
		seen[e.Address] = true
		h, ok := d.hosts[e.Address]
		if !ok {
			d.hosts[e.Address] = &hostOutlier{ep: e}
			continue
		}
		if h.ep != e {
			e.ejected.Store(h.ep.ejected.Load())
			h.ep = e
		}
	}
	for addr, h := range d.hosts {
		if !seen[addr] {
			if h.ep.ejected.Load() {
				d.st.active.Dec()
			}
			delete(d.hosts, addr)
		}
	}
}

// report feeds one attempt's outcome for ep.
func (d *outlierDetector) report(ep *Endpoint, r Result, status int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.hosts[ep.Address]
	if !ok || h.ep.ejected.Load() {
		return
	}
	c := d.cfg
	if r != ResultResponse {
		if c.splitLocal {
			h.consecLocal++
			if h.consecLocal >= c.consecLocal {
				h.consecLocal = 0
				d.st.detectedLocal.Inc()
				d.ejectLocked(h, c.enforceLocal, d.st.enforcedLocal, nil)
			}
			return
		}
		// Without the split, local failures count as the 5xx Envoy maps
		// them to: 503 for connect failures and resets, 504 for timeouts.
		status = 503
		if r == ResultTimeout {
			status = 504
		}
	} else if c.splitLocal {
		h.consecLocal = 0 // a response means the connection worked
	}
	if status < 500 {
		h.consec5xx, h.consecGateway = 0, 0
		return
	}
	h.consec5xx++
	if status == 502 || status == 503 || status == 504 {
		h.consecGateway++
	} else {
		h.consecGateway = 0
	}
	switch {
	case h.consecGateway >= c.consecGateway && c.enforceGateway > 0:
		h.consecGateway, h.consec5xx = 0, 0
		d.st.detectedGw.Inc()
		d.ejectLocked(h, c.enforceGateway, d.st.enforcedGw, nil)
	case h.consec5xx >= c.consec5xx:
		h.consecGateway, h.consec5xx = 0, 0
		d.st.detected5xx.Inc()
		d.ejectLocked(h, c.enforce5xx, d.st.enforced5xx, d.st.legacy5xx)
	}
}

// ejectLocked ejects h with probability enforcing% if max_ejection_percent
// allows; Envoy always allows one ejection, so a small cluster can still
// shed its one bad host.
func (d *outlierDetector) ejectLocked(h *hostOutlier, enforcing uint32, enforced, legacy *stats.Counter) {
	if enforcing == 0 || (enforcing < 100 && rand.IntN(100) >= int(enforcing)) {
		return
	}
	active := d.st.active.Value()
	if active > 0 && float64(active+1)*100/float64(len(d.hosts)) > float64(d.cfg.maxEjectionPct) {
		d.st.overflow.Inc()
		return
	}
	h.ep.ejected.Store(true)
	h.ejectedAt = d.now()
	h.ejections++
	d.st.active.Inc()
	d.st.enforcedTotal.Inc()
	d.st.total.Inc()
	enforced.Inc()
	if legacy != nil {
		legacy.Inc()
	}
}

// sweep is the interval timer's work: return hosts whose ejection time is
// over, and let hosts that stayed in service shrink their multiplier.
func (d *outlierDetector) sweep() {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, h := range d.hosts {
		if !h.ep.ejected.Load() {
			if h.ejections > 0 {
				h.ejections--
			}
			continue
		}
		span := min(d.cfg.baseEjection*time.Duration(h.ejections), d.cfg.maxEjection)
		if !now.Before(h.ejectedAt.Add(span)) {
			h.ep.ejected.Store(false)
			h.consec5xx, h.consecGateway, h.consecLocal = 0, 0, 0
			d.st.active.Dec()
		}
	}
}

// Report tells outlier detection how an attempt to ep ended: a response
// with its status, or a local failure. Clusters without outlier detection
// ignore it.
func (c *Cluster) Report(ep *Endpoint, r Result, status int) {
	if c.outlier != nil && ep != nil {
		c.outlier.report(ep, r, status)
	}
}
