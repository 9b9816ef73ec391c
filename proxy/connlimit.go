package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/outrigger-mesh/outrigger/proxy/h1server"
)

// connGate caps the downstream connections one listener has open
// (listeners.<listener>.max_connections), across every server Serve runs
// for it: while a reload moves the listener to a new address, the
// connections draining at the old one count towards the new one's cap,
// since they hold descriptors all the same. Each server's accept loop
// asks Admit of every connection it accepts (see h1server.Server.Gate);
// one over the cap is closed at once, as Envoy's listener connection
// limit closes it, rather than left in the kernel's backlog by a paused
// accept loop, where its client would wait in connect and time out.
//
// Admit and Release are atomics and one gauge update; the overflow path
// adds a counter and, at most once per overflowLogEvery, a log line.
type connGate struct {
	l Listener
	// max is the cap; 0 means none. Apply stores it: connections
	// already open stay when it is lowered.
	max  atomic.Int64
	open atomic.Int64

	gauge    prometheus.Gauge   // outrigger_proxy_downstream_connections{listener}
	overflow prometheus.Counter // outrigger_proxy_downstream_connections_overflow_total{listener}

	log *zap.Logger
	now func() time.Time
	// pending counts the connections closed over the cap and not yet
	// reported.
	pending atomic.Int64
	logMu   sync.Mutex
	// nextLog: no report before it; guarded by logMu.
	nextLog time.Time
}

// overflowLogEvery is the least time between two reports of a listener's
// connections closed over its cap: a client retrying in a loop would
// otherwise write a line per connection.
const overflowLogEvery = 10 * time.Second

var _ h1server.ConnGate = (*connGate)(nil)

// Admit takes a place for a connection just accepted, unless the
// listener has max_connections open already.
func (g *connGate) Admit() bool {
	for {
		n := g.open.Load()
		if m := g.max.Load(); m > 0 && n >= m {
			g.overflow.Inc()
			g.overflowed(m)
			return false
		}
		if g.open.CompareAndSwap(n, n+1) {
			g.gauge.Inc()
			return true
		}
	}
}

// Release gives back the place of a connection Admit admitted.
func (g *connGate) Release() {
	g.open.Add(-1)
	g.gauge.Dec()
}

// overflowed notes a connection closed over the cap max, and reports
// those closed since the last report: the first at once, then at most
// one line per overflowLogEvery.
func (g *connGate) overflowed(max int64) {
	g.pending.Add(1)
	now := g.now()
	g.logMu.Lock()
	if now.Before(g.nextLog) {
		g.logMu.Unlock()
		return
	}
	n := g.pending.Swap(0)
	g.nextLog = now.Add(overflowLogEvery)
	g.logMu.Unlock()
	if n > 0 {
		g.log.Warn("listener at max_connections: closing new connections",
			zap.String("listener", g.l.String()), zap.Int64("max_connections", max),
			zap.Int64("closed", n), zap.Int64("open", g.open.Load()))
	}
}
