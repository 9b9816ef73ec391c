package proxy

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// routeFault is a route's compiled fault injection (routes[].fault), as
// Envoy's HTTP fault filter: it runs after the route matched and before
// its action, so that the action (and its route timeout) sees a delayed
// request as if it came late, and an aborted one never.
type routeFault struct {
	// delay holds delayPerMillion of every million requests for delay;
	// 0: no delay.
	delay           time.Duration
	delayPerMillion int
	// abortPerMillion of every million requests are answered with
	// abortHTTP (0: a request that is not gRPC goes on) or, for gRPC,
	// abortGRPC.
	abortPerMillion      int
	abortHTTP, abortGRPC int
	// maxActive caps the requests delayed at once; 0: no cap. active
	// counts them (with or without a cap, so that a reload that sets
	// one finds them counted), shared with the route of the same
	// listener and name in the snapshots before (see compileFault).
	maxActive int64
	active    *atomic.Int64

	delays, aborts prometheus.Counter
}

// perMillion is a percentage as a count per million requests.
func perMillion(percent float64) int { return int(percent*10_000 + 0.5) }

// compileFault compiles the fault of the route key names. The count of
// requests its delay holds is the one of the route of the same key in
// the snapshot serving now, when that has a fault, else the one an
// earlier reload removed while it held requests (see keepHeldFaults):
// the requests held there still wait, and a reload (a control plane
// pushes them often) must not let another max_active of them be held,
// as Envoy's active_faults gauge outlives a configuration update. prev
// indexes the serving snapshot's routes (see prevRoutes). Caller holds
// applyMu.
func (p *Proxy) compileFault(key routeKey, f *config.Fault, prev map[routeKey]*route) *routeFault {
	lname, route := key.l.String(), key.name
	rf := &routeFault{maxActive: int64(f.MaxActive)}
	if r := prev[key]; r != nil && r.fault != nil {
		rf.active = r.fault.active
	} else if n := p.heldFaults[key]; n != nil {
		rf.active = n
	} else {
		rf.active = new(atomic.Int64)
	}
	if d := f.Delay; d != nil {
		rf.delay, rf.delayPerMillion = d.Fixed, perMillion(d.Percent)
		rf.delays = p.m.faults.WithLabelValues(lname, route, "delay")
		p.m.next.faults[[3]string{lname, route, "delay"}] = struct{}{}
	}
	if a := f.Abort; a != nil {
		rf.abortPerMillion, rf.abortHTTP = perMillion(a.Percent), a.HTTPStatus
		rf.abortGRPC = a.GRPCCode()
		if rf.abortGRPC == 0 {
			rf.abortGRPC = grpcCodeForHTTP(a.HTTPStatus)
		}
		rf.aborts = p.m.faults.WithLabelValues(lname, route, "abort")
		p.m.next.faults[[3]string{lname, route, "abort"}] = struct{}{}
	}
	return rf
}

// keepHeldFaults keeps, once s replaced old, the counts of the
// requests held by the delays of the faults s no longer has, while they
// hold any, so that a later reload that adds a route's fault back
// counts them against its max_active (see compileFault); it forgets
// those that hold none, or that s took on. A request that matched its
// route just before a reload and is held after it on a count forgotten
// as empty escapes the cap: it would take holding it across every
// compile to close that, for one request a reload. Caller holds
// applyMu.
func (p *Proxy) keepHeldFaults(old, s *snapshot) {
	var held map[routeKey]*atomic.Int64
	keep := func(k routeKey, n *atomic.Int64) {
		if n.Load() == 0 {
			return
		}
		if held == nil {
			held = map[routeKey]*atomic.Int64{}
		}
		held[k] = n
	}
	for k, n := range p.heldFaults {
		keep(k, n)
	}
	if old != nil {
		for _, t := range old.tables {
			if t == nil {
				continue
			}
			for _, rt := range t.routes {
				if rt.fault != nil {
					keep(rt.key, rt.fault.active)
				}
			}
		}
	}
	if held != nil {
		for _, t := range s.tables {
			if t == nil {
				continue
			}
			for _, rt := range t.routes {
				if rt.fault != nil {
					delete(held, rt.key)
				}
			}
		}
	}
	p.heldFaults = held
}

// grpcCodeForHTTP is the gRPC status a gRPC client reads from an HTTP
// status in place of a gRPC answer (gRPC's "HTTP to gRPC Status Code
// Mapping").
func grpcCodeForHTTP(status int) int {
	switch status {
	case http.StatusBadRequest:
		return grpcInternal
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return grpcUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return grpcUnavailable
	}
	return 2 // UNKNOWN
}

// inject runs the fault for one request: it holds a drawn delay (or
// until the client goes away) and reports whether the request was
// answered, by a drawn abort, or is to be dropped because its client
// went away during the delay (answered is then true and status 0).
func (f *routeFault) inject(p *Proxy, w http.ResponseWriter, r *http.Request, grpc bool, edit *headerEdit) (answered bool, status int) {
	if f.delayPerMillion > 0 && p.intn(1_000_000) < f.delayPerMillion {
		if n := f.active.Add(1); f.maxActive == 0 || n <= f.maxActive {
			f.delays.Inc()
			held := time.Now()
			t := time.NewTimer(f.delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
			}
			f.active.Add(-1)
			if r.Context().Err() != nil {
				return true, 0
			}
			if grpc && !spendGRPCTimeout(r.Header, time.Since(held)) {
				// The client's deadline passed during the delay: it has
				// given up, and the upstream's work would be thrown
				// away. Answered as a grpc-timeout of zero is.
				edit.apply(w.Header())
				return true, p.localReply(w, grpc, localReply{reason: ReasonUpstreamTimeout})
			}
		} else {
			f.active.Add(-1)
		}
	}
	if f.abortPerMillion > 0 && (grpc || f.abortHTTP != 0) && p.intn(1_000_000) < f.abortPerMillion {
		f.aborts.Inc()
		// The route's response_headers edits apply to its local
		// replies, before their own fields.
		edit.apply(w.Header())
		return true, p.localReply(w, grpc, localReply{reason: ReasonFaultAbort,
			httpStatus: f.abortHTTP, grpcStatus: f.abortGRPC})
	}
	return false, 0
}

// spendGRPCTimeout takes spent, the time a delay held the request, from
// the grpc-timeout in h, and reports whether any is left. The route
// timeout starts after the delay (as Envoy's router runs after its
// fault filter), but grpc-timeout is the client's own deadline, which
// ran during it: without this, the route deadline would take the whole
// grpc-timeout again from the delay's end, forward a call the client
// has given up on, and tell the upstream it has more time than the
// client gives it. A missing or malformed grpc-timeout is left alone
// (see routeDeadline).
func spendGRPCTimeout(h http.Header, spent time.Duration) bool {
	vv := h[hdrGRPCTimeout]
	if len(vv) == 0 || vv[0] == "" {
		return true
	}
	d, err := parseGRPCTimeout(vv[0])
	if err != nil {
		return true
	}
	if d -= spent; d <= 0 {
		return false
	}
	h[hdrGRPCTimeout] = []string{formatGRPCTimeout(d)}
	return true
}

// serveFault runs rt's fault for r and reports whether it answered the
// request (an abort) or the client went away during its delay; the
// route's cluster="" series count those, from start.
//
//go:noinline
func (p *Proxy) serveFault(w http.ResponseWriter, r *http.Request, rt *route, grpc bool, start time.Time) bool {
	answered, status := rt.fault.inject(p, w, r, grpc, &rt.respHeaders)
	if !answered {
		return false
	}
	if status == 0 {
		status = statusClientClosed
	}
	rt.localStats.record(status, p.now().Sub(start).Seconds())
	return true
}
