package health

import (
	"errors"
	"time"
)

// outcome is what one check says of an endpoint.
type outcome uint8

const (
	passed outcome = iota
	// failed counts toward UnhealthyThreshold: a timeout, a connection,
	// TLS or protocol failure, a retriable status (Envoy's network
	// failure).
	failed
	// failedNow is an answer that says the endpoint is unhealthy: it
	// turns a healthy endpoint unhealthy at once (Envoy's active
	// failure).
	failedNow
)

// outcomeOf is the outcome of a check that returned err.
// A wrapped CheckError counts as itself, as CauseOf reads it.
func outcomeOf(err error) outcome {
	var ce *CheckError
	switch {
	case err == nil:
		return passed
	case errors.As(err, &ce) && ce.Immediate:
		return failedNow
	}
	return failed
}

// tracker is one endpoint's health state and the rules that move it: no
// goroutine, no clock, no I/O. The Checker keeps one per endpoint and feeds
// it each check's outcome.
type tracker struct {
	healthy   bool
	checked   bool // at least one check has finished
	successes int  // consecutive
	failures  int  // consecutive, of either kind
	lastCheck time.Time
	lastError string
}

// newTracker returns the state of an endpoint nobody has checked: healthy,
// so that a new cluster takes traffic at once.
func newTracker() tracker { return tracker{healthy: true} }

// pendingTracker returns the state of an endpoint added to a cluster that
// is already checked: unhealthy and unchecked, so that it takes no traffic
// before its first check passes (Envoy's pending first health check).
func pendingTracker() tracker { return tracker{} }

// pending reports whether the endpoint is out for want of a check.
func (t tracker) pending() bool { return !t.checked && !t.healthy }

// record applies one check's outcome (reason is the failure, ignored when
// it passed) and reports whether the endpoint changed between healthy and
// unhealthy, or stopped being pending: a pending endpoint's first check
// is a transition whatever its outcome, since the endpoint was out for
// want of a check and is now in, or out for a reason. The first check
// decides alone; after it a healthy endpoint turns unhealthy at a
// failedNow, or at unhealthyThreshold failures of either kind in a row,
// and an unhealthy one healthy after healthyThreshold successes in a row.
func (t *tracker) record(o outcome, reason string, now time.Time, healthyThreshold, unhealthyThreshold int) (changed bool) {
	ok := o == passed
	first := !t.checked
	pending := t.pending()
	t.checked = true
	t.lastCheck = now
	if ok {
		t.successes++
		t.failures = 0
		t.lastError = ""
	} else {
		t.failures++
		t.successes = 0
		t.lastError = reason
	}
	was := t.healthy
	switch {
	case first:
		t.healthy = ok
	case t.healthy && (o == failedNow || t.failures >= unhealthyThreshold):
		t.healthy = false
	case !t.healthy && t.successes >= healthyThreshold:
		t.healthy = true
	}
	return t.healthy != was || pending
}
