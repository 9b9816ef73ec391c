package health

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/quick"
	"time"
)

func TestTrackerRules(t *testing.T) {
	const F, S, N = failed, passed, failedNow
	tests := []struct {
		name       string
		healthyTh  int
		unhealthTh int
		outcomes   []outcome
		// want is the healthy flag after each outcome, changed whether
		// that outcome turned the endpoint.
		want    []bool
		changed []bool
	}{
		{"first success confirms", 2, 3, []outcome{S}, []bool{true}, []bool{false}},
		{"first failure decides alone", 2, 3, []outcome{F}, []bool{false}, []bool{true}},
		{"after the first, failures below threshold keep it healthy", 2, 3,
			[]outcome{S, F, F, S, F, F}, []bool{true, true, true, true, true, true}, []bool{false, false, false, false, false, false}},
		{"unhealthy threshold reached", 2, 3,
			[]outcome{S, F, F, F, F}, []bool{true, true, true, false, false}, []bool{false, false, false, true, false}},
		{"healthy threshold after first failure", 2, 3,
			[]outcome{F, S, S, S}, []bool{false, false, true, true}, []bool{true, false, true, false}},
		{"a failure resets the success run", 3, 1,
			[]outcome{F, S, S, F, S, S, S}, []bool{false, false, false, false, false, false, true}, []bool{true, false, false, false, false, false, true}},
		{"a success resets the failure run", 1, 2,
			[]outcome{S, F, S, F, S, F, F}, []bool{true, true, true, true, true, true, false}, []bool{false, false, false, false, false, false, true}},
		{"an answer that fails ejects at once, whatever the threshold", 2, 3,
			[]outcome{S, N}, []bool{true, false}, []bool{false, true}},
		{"an answer that fails ends a run of counted failures", 2, 3,
			[]outcome{S, F, F, N}, []bool{true, true, true, false}, []bool{false, false, false, true}},
		{"an endpoint back from an answer that fails is ejected again at the next", 2, 3,
			[]outcome{S, N, S, S, F, N}, []bool{true, false, false, true, true, false}, []bool{false, true, false, true, false, true}},
		{"the way back still needs the healthy threshold", 3, 3,
			[]outcome{S, N, S, S, N, S, S, S}, []bool{true, false, false, false, false, false, false, true}, []bool{false, true, false, false, false, false, false, true}},
		{"first answer that fails decides alone", 2, 3, []outcome{N}, []bool{false}, []bool{true}},
		{"thresholds of one flip on every change", 1, 1,
			[]outcome{S, F, S, S, F}, []bool{true, false, true, true, false}, []bool{false, true, true, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker()
			if !tr.healthy || tr.checked {
				t.Fatalf("new tracker: healthy=%v checked=%v, want healthy and unchecked", tr.healthy, tr.checked)
			}
			for k, o := range tt.outcomes {
				changed := tr.record(o, "boom", time.Unix(int64(k), 0), tt.healthyTh, tt.unhealthTh)
				if tr.healthy != tt.want[k] || changed != tt.changed[k] {
					t.Fatalf("after outcome %d (%v): healthy=%v changed=%v, want %v %v", k, o, tr.healthy, changed, tt.want[k], tt.changed[k])
				}
			}
		})
	}
}

func TestTrackerCountersAndLastResult(t *testing.T) {
	tr := newTracker()
	t1, t2, t3 := time.Unix(1, 0), time.Unix(2, 0), time.Unix(3, 0)
	tr.record(failed, "connect: connection refused", t1, 2, 2)
	tr.record(failed, "timeout", t2, 2, 2)
	if tr.failures != 2 || tr.successes != 0 || tr.lastError != "timeout" || !tr.lastCheck.Equal(t2) || !tr.checked {
		t.Fatalf("after two failures: %+v", tr)
	}
	tr.record(passed, "ignored", t3, 2, 2)
	if tr.failures != 0 || tr.successes != 1 || tr.lastError != "" || !tr.lastCheck.Equal(t3) {
		t.Fatalf("after a success: %+v", tr)
	}
}

// modelHealthy is the rules read off the whole history at once: healthy
// before any check; the first outcome decides; after it a healthy endpoint
// turns unhealthy at an answer that fails, or when the run of failures of
// either kind ending at the latest check reaches the unhealthy threshold,
// and an unhealthy one healthy when the run of successes reaches the
// healthy threshold.
func modelHealthy(outcomes []outcome, healthyTh, unhealthyTh int) []bool {
	var out []bool
	healthy := true
	for k, o := range outcomes {
		ok := o == passed
		if k == 0 {
			healthy = ok
		} else {
			run := 0
			for j := k; j >= 0 && (outcomes[j] == passed) == ok; j-- {
				run++
			}
			if healthy && (o == failedNow || !ok && run >= unhealthyTh) || !healthy && ok && run >= healthyTh {
				healthy = ok
			}
		}
		out = append(out, healthy)
	}
	return out
}

func TestTrackerMatchesModel(t *testing.T) {
	type input struct {
		Outcomes               []uint8 // each %3 an outcome
		HealthyTh, UnhealthyTh uint8
	}
	outcomes := func(in input) []outcome {
		os := make([]outcome, len(in.Outcomes))
		for k, o := range in.Outcomes {
			os[k] = outcome(o % 3)
		}
		return os
	}
	// run feeds in's outcomes to the tracker start returns.
	run := func(start func() tracker) func(in input) []bool {
		return func(in input) []bool {
			h, u := int(in.HealthyTh%5)+1, int(in.UnhealthyTh%5)+1
			tr := start()
			var out []bool
			for _, o := range outcomes(in) {
				tr.record(o, "x", time.Time{}, h, u)
				out = append(out, tr.healthy)
			}
			return out
		}
	}
	model := func(in input) []bool {
		return modelHealthy(outcomes(in), int(in.HealthyTh%5)+1, int(in.UnhealthyTh%5)+1)
	}
	cfg := &quick.Config{MaxCount: 2000, Rand: nil}
	if err := quick.CheckEqual(run(newTracker), model, cfg); err != nil {
		t.Fatal(err)
	}
	// A pending endpoint differs only until its first check, which
	// decides alone there too.
	if err := quick.CheckEqual(run(pendingTracker), model, cfg); err != nil {
		t.Fatal(err)
	}
}

// A pending endpoint is out until its first check, and that check is a
// transition whether it passes or fails; the checks after it report
// transitions as for any endpoint.
func TestPendingTrackerFirstCheckIsATransition(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		tr := pendingTracker()
		if tr.healthy || tr.checked {
			t.Fatalf("pending tracker %+v", tr)
		}
		h, u := r.IntN(4)+1, r.IntN(4)+1
		if !tr.record(outcome(r.IntN(3)), "x", time.Time{}, h, u) {
			t.Fatal("a pending endpoint's first check reported no transition")
		}
		for range 50 {
			was := tr.healthy
			changed := tr.record(outcome(r.IntN(3)), "x", time.Time{}, h, u)
			if changed != (was != tr.healthy) {
				t.Fatalf("changed=%v but healthy went %v -> %v", changed, was, tr.healthy)
			}
		}
	}
}

func TestTrackerChangedMatchesFlagFlip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		tr := newTracker()
		h, u := r.IntN(4)+1, r.IntN(4)+1
		for range 50 {
			was := tr.healthy
			changed := tr.record(outcome(r.IntN(3)), "x", time.Time{}, h, u)
			if changed != (was != tr.healthy) {
				t.Fatalf("changed=%v but healthy went %v -> %v", changed, was, tr.healthy)
			}
		}
	}
}

func TestOutcomeOf(t *testing.T) {
	tests := []struct {
		err  error
		want outcome
	}{
		{nil, passed},
		{&CheckError{Cause: CauseTimeout, Reason: "timeout"}, failed},
		{&CheckError{Cause: CauseStatus, Reason: "status 503", Immediate: true}, failedNow},
		{errors.New("not a CheckError"), failed},
	}
	for _, tt := range tests {
		if got := outcomeOf(tt.err); got != tt.want {
			t.Errorf("outcomeOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestCauseOf(t *testing.T) {
	for _, c := range Causes() {
		if got := CauseOf(fmt.Errorf("wrapped: %w", &CheckError{Cause: c})); got != c {
			t.Errorf("CauseOf(a %s failure) = %s", c, got)
		}
	}
	if got := CauseOf(errors.New("not a CheckError")); got != CauseProtocol {
		t.Errorf("CauseOf(another error) = %s, want protocol", got)
	}
}
