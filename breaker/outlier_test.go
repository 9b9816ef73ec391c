package breaker

import (
	"slices"
	"sync"
	"testing"
	"time"
)

var (
	okV  = Verdict{Reason: "http_200"}
	v500 = Verdict{Failure: true, Reason: "http_500"}
	v503 = Verdict{Failure: true, Gateway: true, Reason: "http_503"}
)

func intp(v int) *int           { return &v }
func floatp(v float64) *float64 { return &v }

func mustDetector(t *testing.T, c OutlierConfig, n int, opts ...DetectorOption) *Detector {
	t.Helper()
	d, err := NewDetector(c, n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func record(d *Detector, i int, now time.Time, v Verdict, times int) {
	for range times {
		d.Record(i, now, v)
	}
}

func TestConsecutive5xxEjectsAtOnce(t *testing.T) {
	d := mustDetector(t, OutlierConfig{}, 10)
	record(d, 3, at(0), v500, 4)
	d.Record(3, at(0), okV) // breaks the run
	record(d, 3, at(0), v500, 4)
	if d.Ejected(3, at(0)) {
		t.Fatal("ejected after two runs of 4")
	}
	d.Record(3, at(time.Second), v500)
	if !d.Ejected(3, at(time.Second)) {
		t.Fatal("not ejected after 5 failures in a row")
	}
	s := d.Snapshot(at(time.Second))
	e := s.Endpoints[3]
	if !e.EjectedUntil.Equal(at(31*time.Second)) || e.Reason != "consecutive_5xx" || e.TimesEjected != 1 || s.Ejected != 1 {
		t.Fatalf("snapshot %+v", e)
	}
	if got := d.Eligible(at(time.Second), nil); slices.Contains(got, 3) || len(got) != 9 {
		t.Fatalf("Eligible = %v", got)
	}
}

func TestConsecutiveGatewayFailure(t *testing.T) {
	cfg := OutlierConfig{Consecutive5xx: 10, ConsecutiveGatewayFailure: 3}
	// Envoy's default: detected, not enforced.
	d := mustDetector(t, cfg, 10)
	record(d, 0, at(0), v503, 3)
	if d.Ejected(0, at(0)) || d.Snapshot(at(0)).NotEnforced != 1 {
		t.Fatalf("gateway run ejected with enforcing 0: %+v", d.Snapshot(at(0)))
	}
	cfg.EnforcingConsecutiveGatewayFailure = intp(100)
	d = mustDetector(t, cfg, 10)
	record(d, 0, at(0), v503, 2)
	d.Record(0, at(0), v500) // a non-gateway failure breaks the gateway run
	record(d, 0, at(0), v503, 2)
	if d.Ejected(0, at(0)) {
		t.Fatal("ejected without 3 gateway errors in a row")
	}
	d.Record(0, at(0), v503)
	if s := d.Snapshot(at(0)).Endpoints[0]; !s.Ejected || s.Reason != "consecutive_gateway_failure" {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestEnforcingRoll(t *testing.T) {
	cfg := OutlierConfig{Consecutive5xx: 2, EnforcingConsecutive5xx: intp(50)}
	d := mustDetector(t, cfg, 10, WithEnforcingRand(seqRand(0.6, 0.4)))
	record(d, 0, at(0), v500, 2) // roll 0.6: 60 >= 50, not enforced
	if d.Ejected(0, at(0)) {
		t.Fatal("enforced on a losing roll")
	}
	record(d, 0, at(0), v500, 2) // run of 4: tried again, roll 0.4 wins
	if !d.Ejected(0, at(0)) {
		t.Fatal("not enforced on a winning roll")
	}
}

// traffic records volume calls to endpoint i with the given success rate,
// the failures spread evenly.
func traffic(d *Detector, now time.Time, i int, rate float64, volume int) {
	f := volume - int(rate*float64(volume)+0.5)
	for k := range volume {
		v := okV
		if k*f/volume != (k+1)*f/volume {
			v = v500
		}
		d.Record(i, now, v)
	}
}

func successRateTraffic(d *Detector, now time.Time, rates []float64, volume int) {
	for i, r := range rates {
		traffic(d, now, i, r, volume)
	}
}

func TestSuccessRateOutlierIsEjected(t *testing.T) {
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 1000}, 6)
	successRateTraffic(d, at(0), []float64{1, 0.99, 1, 0.98, 1, 0.5}, 100)
	snap := d.Snapshot(at(0))
	if snap.Endpoints[5].IntervalRequests != 100 || snap.Endpoints[5].IntervalSuccesses != 50 {
		t.Fatalf("interval stats %+v", snap.Endpoints[5])
	}
	d.Evaluate(at(10 * time.Second))
	for i := range 6 {
		if got := d.Ejected(i, at(10*time.Second)); got != (i == 5) {
			t.Errorf("endpoint %d ejected = %v", i, got)
		}
	}
	if s := d.Snapshot(at(10 * time.Second)); s.Endpoints[5].Reason != "success_rate" || s.Endpoints[0].IntervalRequests != 0 {
		t.Fatalf("after Evaluate: %+v", s)
	}
}

func TestSuccessRateNeedsMinimumHostsAndVolume(t *testing.T) {
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 1000}, 6)
	// Endpoint 3 has one request too few to take part: only 4 hosts
	// qualify, fewer than success_rate_minimum_hosts (5).
	successRateTraffic(d, at(0), []float64{1, 1, 1}, 100)
	traffic(d, at(0), 3, 1, 99)
	traffic(d, at(0), 4, 0.5, 100)
	d.Evaluate(at(10 * time.Second))
	if s := d.Snapshot(at(10 * time.Second)); s.Ejected != 0 {
		t.Fatalf("ejected with 4 qualifying hosts: %+v", s)
	}
	// Next interval, with enough volume everywhere, 4 is an outlier.
	successRateTraffic(d, at(10*time.Second), []float64{1, 1, 1, 1, 0.5}, 100)
	d.Evaluate(at(20 * time.Second))
	if !d.Ejected(4, at(20*time.Second)) {
		t.Fatalf("not ejected: %+v", d.Snapshot(at(20*time.Second)))
	}
}

func TestEveryEndpointEquallyBadIsNoOutlier(t *testing.T) {
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 1000, MaxEjectionPercent: 100}, 5)
	successRateTraffic(d, at(0), []float64{0.3, 0.3, 0.3, 0.3, 0.3}, 100)
	d.Evaluate(at(10 * time.Second))
	if s := d.Snapshot(at(10 * time.Second)); s.Ejected != 0 || s.Panic {
		t.Fatalf("equally bad endpoints: %+v", s)
	}
}

func TestEjectionTimeGrowsIsCappedAndDecays(t *testing.T) {
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 1, BaseEjectionTime: 10 * time.Second, MaxEjectionTime: 25 * time.Second}, 10)
	now := at(0)
	var lengths []time.Duration
	for range 4 {
		d.Record(0, now, v500)
		until := d.Snapshot(now).Endpoints[0].EjectedUntil
		lengths = append(lengths, until.Sub(now))
		now = until // returns by itself
		if d.Ejected(0, now) {
			t.Fatal("still ejected when the time is up")
		}
	}
	if !slices.Equal(lengths, []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second, 25 * time.Second}) {
		t.Fatalf("ejection lengths %v", lengths)
	}
	// Staying in for base_ejection_time per step lowers the multiplier.
	d.Evaluate(now)
	m0 := d.Snapshot(now).Endpoints[0].Multiplier
	d.Evaluate(now.Add(10 * time.Second))
	d.Evaluate(now.Add(20 * time.Second))
	if m := d.Snapshot(now.Add(20 * time.Second)).Endpoints[0].Multiplier; m0 != 4 || m != 2 {
		t.Fatalf("multiplier %d then %d, want 4 then 2", m0, m)
	}
	d.Record(0, now.Add(20*time.Second), v500)
	if u := d.Snapshot(now.Add(20 * time.Second)).Endpoints[0].EjectedUntil; u.Sub(now.Add(20*time.Second)) != 25*time.Second {
		t.Fatalf("after decay to 2, next ejection %v, want min(30s, 25s)", u.Sub(now.Add(20*time.Second)))
	}
}

// The multiplier stops growing past max_ejection_time's share, so an
// endpoint ejected many times in a row is back to base-length
// ejections after that many steps, not after as many as its ejections.
func TestEjectionMultiplierIsCapped(t *testing.T) {
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 1, BaseEjectionTime: 10 * time.Second, MaxEjectionTime: 25 * time.Second}, 10)
	now := at(0)
	for range 20 {
		d.Record(0, now, v500)
		now = d.Snapshot(now).Endpoints[0].EjectedUntil
	}
	if m := d.Snapshot(now).Endpoints[0].Multiplier; m != 4 {
		t.Fatalf("multiplier %d after 20 ejections, want 4 (4 × 10s reaches 25s + 10s)", m)
	}
	d.Evaluate(now)
	for step := 1; step <= 4; step++ {
		d.Evaluate(now.Add(time.Duration(step) * 10 * time.Second))
	}
	now = now.Add(40 * time.Second)
	if m := d.Snapshot(now).Endpoints[0].Multiplier; m != 0 {
		t.Fatalf("multiplier %d after four base_ejection_times in, want 0", m)
	}
	d.Record(0, now, v500)
	if u := d.Snapshot(now).Endpoints[0].EjectedUntil; u.Sub(now) != 10*time.Second {
		t.Fatalf("next ejection %v, want the base 10s", u.Sub(now))
	}
}

// The multiplier drops by one for each base_ejection_time spent in, also
// when the evaluation interval does not divide it: evaluated every 30s
// with a base of 20s, 120s in take six steps, not one per evaluation.
func TestEjectionMultiplierDecaysPerBaseWhateverTheInterval(t *testing.T) {
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 1, Interval: 30 * time.Second, BaseEjectionTime: 20 * time.Second}, 10)
	now := at(0)
	for range 6 {
		d.Record(0, now, v500)
		now = d.Snapshot(now).Endpoints[0].EjectedUntil
	}
	if m := d.Snapshot(now).Endpoints[0].Multiplier; m != 6 {
		t.Fatalf("multiplier %d after 6 ejections in a row, want 6", m)
	}
	want := []int{6, 5, 3, 2, 0} // 6 − floor(in / 20s), at 0s, 30s, 60s, 90s, 120s in
	for i, w := range want {
		ev := now.Add(time.Duration(i) * 30 * time.Second)
		d.Evaluate(ev)
		if m := d.Snapshot(ev).Endpoints[0].Multiplier; m != w {
			t.Fatalf("%v in: multiplier %d, want %d", ev.Sub(now), m, w)
		}
	}
}

// An ejection between two evaluations starts from the multiplier the
// time spent in has lowered it to, not from the one the last Evaluate
// left: evaluated every 30s with a base of 20s, an endpoint back for 50s
// has two steps behind it, though the Evaluate 30s in took only one.
func TestEjectionBetweenEvaluationsSeesTheDecayDue(t *testing.T) {
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 1, Interval: 30 * time.Second, BaseEjectionTime: 20 * time.Second}, 10)
	now := at(0)
	for range 6 {
		d.Record(0, now, v500)
		now = d.Snapshot(now).Endpoints[0].EjectedUntil
	}
	d.Evaluate(now)
	d.Evaluate(now.Add(30 * time.Second)) // one step: 6 to 5
	back := now.Add(50 * time.Second)     // two steps due: 4
	if m := d.Snapshot(back).Endpoints[0].Multiplier; m != 4 {
		t.Fatalf("multiplier %d 50s in, want 4", m)
	}
	d.Record(0, back, v500)
	if u := d.Snapshot(back).Endpoints[0].EjectedUntil; u.Sub(back) != 100*time.Second {
		t.Fatalf("ejection 50s after a return at multiplier 6: %v, want 5 × 20s", u.Sub(back))
	}
}

func TestEjectedEndpointReturnsAndHookSeesBoth(t *testing.T) {
	var evs []Ejection
	var d *Detector
	d = mustDetector(t, OutlierConfig{Consecutive5xx: 2}, 4, WithEjectionHook(func(e Ejection) {
		_ = d.Snapshot(e.At) // the hook may call the detector
		evs = append(evs, e)
	}))
	record(d, 1, at(0), v500, 2)
	record(d, 1, at(time.Second), v500, 10) // ignored while ejected
	if got := d.Eligible(at(29*time.Second), nil); !slices.Equal(got, []int{0, 2, 3}) {
		t.Fatalf("Eligible while ejected = %v", got)
	}
	if got := d.Eligible(at(30*time.Second), nil); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("Eligible after return = %v", got)
	}
	if len(evs) != 2 || !evs[0].Ejected || evs[1].Ejected || evs[1].Reason != "ejection_time_over" || !evs[1].At.Equal(at(30*time.Second)) {
		t.Fatalf("events %+v", evs)
	}
	if s := d.Snapshot(at(30 * time.Second)).Endpoints[1]; s.Consecutive5xx != 0 || s.IntervalRequests != 0 {
		t.Fatalf("outcomes while ejected were counted: %+v", s)
	}
}

func TestUnejectReturnsEarlyAndKeepsTheMultiplier(t *testing.T) {
	var evs []Ejection
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 2, MaxEjectionPercent: 100}, 4, WithEjectionHook(func(e Ejection) {
		evs = append(evs, e)
	}))
	if d.Uneject(1, at(0)) {
		t.Fatal("Uneject of an endpoint not ejected reported true")
	}
	record(d, 1, at(0), v500, 2)
	record(d, 2, at(0), v500, 2)
	if !d.Uneject(1, at(5*time.Second)) {
		t.Fatal("Uneject of an ejected endpoint reported false")
	}
	if d.Uneject(1, at(5*time.Second)) {
		t.Fatal("a second Uneject reported true")
	}
	if got := d.Eligible(at(5*time.Second), nil); !slices.Equal(got, []int{0, 1, 3}) {
		t.Fatalf("Eligible after Uneject = %v", got)
	}
	if n := d.EjectedCount(at(5 * time.Second)); n != 1 {
		t.Fatalf("EjectedCount = %d, want 1", n)
	}
	if len(evs) != 3 || evs[2].Ejected || evs[2].Endpoint != 1 || evs[2].Reason != "active_health_check_passed" || !evs[2].At.Equal(at(5*time.Second)) {
		t.Fatalf("events %+v", evs)
	}
	// Endpoint 2 still returns at its own time, reported once.
	if got := d.Eligible(at(30*time.Second), nil); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("Eligible at 30s = %v", got)
	}
	if len(evs) != 4 || evs[3].Endpoint != 2 || evs[3].Reason != "ejection_time_over" {
		t.Fatalf("events %+v", evs)
	}
	// Ejected again within its interval, endpoint 1's second ejection is
	// twice as long: the early return does not forget the first.
	record(d, 1, at(6*time.Second), v500, 2)
	if len(evs) != 5 || !evs[4].Until.Equal(at(66*time.Second)) {
		t.Fatalf("second ejection %+v, want it until 66s", evs[len(evs)-1])
	}
}

func TestMaxEjectionPercentCaps(t *testing.T) {
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: 20}, 10)
	for i := range 4 {
		d.Record(i, at(0), v500)
	}
	s := d.Snapshot(at(0))
	if s.Ejected != 2 || s.MaxEjected != 2 || s.Refused != 2 {
		t.Fatalf("ejected %d (max %d), refused %d; want 2, 2, 2", s.Ejected, s.MaxEjected, s.Refused)
	}
	// When the first two return, a continuing run of failures on the
	// others is tried again.
	d.Record(2, at(31*time.Second), v500)
	if !d.Ejected(2, at(31*time.Second)) {
		t.Fatal("endpoint 2 not ejected once room was made")
	}
}

func TestSmallPoolsKeepOneEndpoint(t *testing.T) {
	for _, pct := range []int{10, 50, 100} {
		for n := 1; n <= 4; n++ {
			d := mustDetector(t, OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: pct}, n)
			now := at(0)
			for step := range 50 { // every endpoint fails all the time
				for i := range n {
					d.Record(i, now, v500)
				}
				if step%7 == 0 {
					d.Evaluate(now)
				}
				s := d.Snapshot(now)
				if s.Ejected >= n && n > 0 || (n == 1 && s.Ejected != 0) {
					t.Fatalf("n=%d pct=%d: %d ejected", n, pct, s.Ejected)
				}
				if len(d.Eligible(now, nil)) == 0 {
					t.Fatalf("n=%d pct=%d: nothing eligible", n, pct)
				}
				now = now.Add(3 * time.Second)
			}
		}
	}
	for _, tc := range []struct{ n, pct, want int }{
		{1, 100, 0}, {2, 10, 1}, {2, 100, 1}, {3, 10, 1}, {3, 100, 2}, {10, 10, 1}, {10, 25, 2}, {20, 10, 2}, {0, 10, 0},
	} {
		if got := maxEjected(tc.n, tc.pct); got != tc.want {
			t.Errorf("maxEjected(%d, %d) = %d, want %d", tc.n, tc.pct, got, tc.want)
		}
	}
}

func TestPanicModeBalancesOverAll(t *testing.T) {
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: 100}, 3)
	d.Record(0, at(0), v500)
	if d.Panic(at(0)) || !slices.Equal(d.Eligible(at(0), nil), []int{1, 2}) {
		t.Fatal("1 of 3 ejected (67% healthy) must not panic")
	}
	d.Record(1, at(0), v500)
	if !d.Panic(at(0)) || !slices.Equal(d.Eligible(at(0), nil), []int{0, 1, 2}) {
		t.Fatal("2 of 3 ejected (33% healthy) must panic and offer all endpoints")
	}
	// panic_threshold 0 turns panic mode off.
	d = mustDetector(t, OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: 100, PanicThreshold: floatp(0)}, 3)
	d.Record(0, at(0), v500)
	d.Record(1, at(0), v500)
	if d.Panic(at(0)) || !slices.Equal(d.Eligible(at(0), nil), []int{2}) {
		t.Fatal("panic mode with panic_threshold 0")
	}
	// Leaving panic mode when the ejections end.
	if d.Panic(at(time.Hour)) {
		t.Fatal("still in panic after returns")
	}
}

func TestDisabledDetectorNeverEjects(t *testing.T) {
	d := mustDetector(t, OutlierConfig{Disabled: true, Consecutive5xx: 1}, 3)
	record(d, 0, at(0), v500, 10)
	d.Evaluate(at(time.Minute))
	if d.Ejected(0, at(0)) || len(d.Eligible(at(0), nil)) != 3 {
		t.Fatal("disabled detector ejected")
	}
}

func TestCarryFromKeepsEjectionsOfRetainedEndpoints(t *testing.T) {
	old := mustDetector(t, OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: 50}, 4)
	old.Record(2, at(0), v500)
	nd := mustDetector(t, OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: 50}, 3)
	// New endpoint 0 is old 2; new 1 is old 0; new 2 is new.
	nd.CarryFrom(old, at(time.Second), func(i int) (int, bool) { return []int{2, 0, -1}[i], i < 2 })
	if !nd.Ejected(0, at(time.Second)) || nd.Ejected(1, at(time.Second)) || nd.Snapshot(at(time.Second)).Endpoints[0].TimesEjected != 1 {
		t.Fatalf("carried state %+v", nd.Snapshot(at(time.Second)))
	}
}

// An ejection whose time was up when the endpoints changed, though the
// old Detector had not yet noticed (no call and no Evaluate since), ends
// in the new one at its time, and the multiplier decays from there. So
// does one the new cap leaves out, from the change.
func TestCarryFromDecaysEjectionsThatEndedOrAreLeftOut(t *testing.T) {
	cfg := OutlierConfig{Consecutive5xx: 1, BaseEjectionTime: 10 * time.Second, MaxEjectionPercent: 100}
	old := mustDetector(t, cfg, 3)
	old.Record(0, at(0), v500) // ejected until 10s
	nd := mustDetector(t, cfg, 3)
	nd.CarryFrom(old, at(12*time.Second), func(i int) (int, bool) { return i, true })
	if nd.Ejected(0, at(12*time.Second)) {
		t.Fatal("an ejection over at 10s carried at 12s")
	}
	nd.Evaluate(at(20 * time.Second))
	if m := nd.Snapshot(at(20 * time.Second)).Endpoints[0].Multiplier; m != 0 {
		t.Fatalf("ejection over at 10s, evaluated at 20s: multiplier %d, want 0", m)
	}

	// Both carried over, but a pool of two keeps one in: the one left out
	// returns at the change.
	old = mustDetector(t, cfg, 3)
	old.Record(0, at(0), v500)
	old.Record(1, at(0), v500)
	nd = mustDetector(t, cfg, 2)
	nd.CarryFrom(old, at(2*time.Second), func(i int) (int, bool) { return i, true })
	if s := nd.Snapshot(at(2 * time.Second)); s.Ejected != 1 || s.Endpoints[1].Ejected {
		t.Fatalf("carried into a pool of two: %+v", s)
	}
	nd.Evaluate(at(12 * time.Second))
	if m := nd.Snapshot(at(12 * time.Second)).Endpoints[1].Multiplier; m != 0 {
		t.Fatalf("left out at 2s, evaluated at 12s: multiplier %d, want 0", m)
	}
}

func TestParallelRecordsNeverExceedTheCap(t *testing.T) {
	const n = 10
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 3, MaxEjectionPercent: 30}, n)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 3000 {
				now := at(time.Duration(k) * 10 * time.Millisecond)
				i := (g + k) % n
				v := okV
				if i < 6 {
					v = v503
				}
				d.Record(i, now, v)
				if got := len(d.Eligible(now, make([]int, 0, n))); got < n-3 {
					t.Errorf("%d eligible, cap allows at least %d", got, n-3)
					return
				}
			}
		}()
	}
	wg.Wait()
	if s := d.Snapshot(at(time.Minute)); s.Ejections == 0 {
		t.Fatalf("no ejections: %+v", s)
	}
}

func TestRecordAndEjectedDoNotAllocate(t *testing.T) {
	d := mustDetector(t, OutlierConfig{}, 8)
	dst := make([]int, 0, 8)
	if n := testing.AllocsPerRun(100, func() {
		d.Record(1, t0, okV)
		d.Record(2, t0, v500)
		_ = d.Ejected(1, t0)
		_ = d.Panic(t0)
		dst = d.Eligible(t0, dst[:0])
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func TestEjectedCountReturnsEndpointsWhoseTimeIsUp(t *testing.T) {
	var returned []int
	d := mustDetector(t, OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: 100, BaseEjectionTime: time.Second},
		3, WithEjectionHook(func(e Ejection) {
			if !e.Ejected {
				returned = append(returned, e.Endpoint)
			}
		}))
	if n := d.EjectedCount(at(0)); n != 0 {
		t.Fatalf("EjectedCount = %d with nothing ejected", n)
	}
	d.Record(0, at(0), v500)
	d.Record(2, at(0), v500)
	if n := d.EjectedCount(at(0)); n != 2 {
		t.Fatalf("EjectedCount = %d, want 2", n)
	}
	// Past the ejection time the count is 0 at once, and the returns are
	// reported without waiting for Evaluate.
	if n := d.EjectedCount(at(time.Minute)); n != 0 {
		t.Fatalf("EjectedCount = %d after the ejections ended", n)
	}
	if !slices.Equal(returned, []int{0, 2}) && !slices.Equal(returned, []int{2, 0}) {
		t.Fatalf("returns reported: %v", returned)
	}
}

// The counts of detections that ejected nothing are shared with the
// Detector carried from: one it makes after the carry (a call in flight
// across a reload) counts in the new Detector too, whose count is never
// below the old one's.
func TestCarryFromSharesSkippedCounts(t *testing.T) {
	zero := 0
	cfg := OutlierConfig{Consecutive5xx: 1, EnforcingConsecutive5xx: &zero}
	old := mustDetector(t, cfg, 2)
	old.Record(0, at(0), v500)
	nd := mustDetector(t, cfg, 2)
	nd.CarryFrom(old, at(time.Second), func(i int) (int, bool) { return i, true })
	old.Record(1, at(2*time.Second), v500)
	_, o := old.Skipped()
	if _, n := nd.Skipped(); o != 2 || n != 2 {
		t.Fatalf("not enforced: old %d, new %d; want 2 in both", o, n)
	}
	if s := nd.Snapshot(at(2 * time.Second)); s.NotEnforced != 2 {
		t.Fatalf("snapshot of the new detector: %+v", s)
	}
}
