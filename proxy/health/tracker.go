package health

import "time"

// tracker is one endpoint's health state and the rules that move it: no
// goroutine, no clock, no I/O. The Checker keeps one per endpoint and feeds
// it each check's outcome.
type tracker struct {
	healthy   bool
	checked   bool // at least one check has finished
	successes int  // consecutive
	failures  int  // consecutive
	lastCheck time.Time
	lastError string
}

// newTracker returns the state of an endpoint nobody has checked: healthy,
// so that a new cluster takes traffic at once.
func newTracker() tracker { return tracker{healthy: true} }

// record applies one check's outcome (reason is the failure, ignored when
// ok) and reports whether the endpoint changed between healthy and
// unhealthy. The first check decides alone; after it a healthy endpoint
// needs unhealthyThreshold failures in a row to turn unhealthy and an
// unhealthy one healthyThreshold successes in a row to turn healthy.
func (t *tracker) record(ok bool, reason string, now time.Time, healthyThreshold, unhealthyThreshold int) (changed bool) {
	first := !t.checked
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
	case t.healthy && t.failures >= unhealthyThreshold:
		t.healthy = false
	case !t.healthy && t.successes >= healthyThreshold:
		t.healthy = true
	}
	return t.healthy != was
}
