package main

import (
	"bufio"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// scrapedFamily is a metric family as /metrics exposes it.
type scrapedFamily struct {
	typ, help string
	labels    map[string]bool // every label name a sample carries (le of histograms left out)
}

// What a running sidecar exports, with every part that registers
// metrics on (the proxy with retries, a fallback, a composition, health
// checks, outlier detection and a zone-aware cluster; the event log), is
// what the docs' metrics tables say: each outrigger_* family is in a
// table with its type and its labels, and has help text. It checks the
// registry as it serves, where TestEveryMetricIsDocumentedWithItsTypeAndLabels
// reads the declarations: a metric registered in a way that test does
// not parse is still seen here.
func TestEveryExportedMetricIsDocumented(t *testing.T) {
	up := newUpstream(t, "svc")
	dead := freeAddr(t)
	cfg := fmt.Sprintf(`node: {service: shop, zone: z1}
admin: {address: 127.0.0.1:0}
listeners:
  outbound: {address: 127.0.0.1:0}
  inbound: {address: 127.0.0.1:0, app: %[1]s}
  app_api: {address: 127.0.0.1:0}
clusters:
  svc:
    endpoints: [{address: %[1]s, zone: z1}, {address: %[2]s, zone: z2}]
    zone_aware: {enabled: true}
    health_check: {interval: 50ms, tcp: {}}
  dead:
    endpoints: [%[2]s]
routes:
  - name: svc
    match: {authority: [svc]}
    cluster: svc
    fault: {delay: {fixed: 1ms, percent: 100}}
  - name: dead
    match: {authority: [dead]}
    cluster: dead
    retry: {attempts: 1}
    fallback: {direct_response: {status: 200, body: fallback}}
  - name: comp
    match: {authority: [comp]}
    composition:
      calls:
        - {name: one, cluster: svc, path: /one}
eventlog:
  data_dir: %[3]s
  topics:
    orders: {partitions: 1}
`, up.addr(), dead, filepath.Join(t.TempDir(), "eventlog"))
	p := start(t, "run", "-c", writeConfig(t, cfg))
	c := newClient(t)
	for _, host := range []string{"svc", "dead", "comp", "nowhere"} {
		get(t, c, "http://"+p.addrs.Outbound+"/", host)
	}
	resp, err := c.Post("http://"+p.addrs.AppAPI+"/v1/topics/orders/records", "application/json", strings.NewReader(`{"key":"k","value":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	get(t, c, "http://"+p.addrs.AppAPI+"/v1/topics/orders/partitions/0/records?offset=0", "")

	// The health checks report the dead endpoint once they have run.
	var got map[string]*scrapedFamily
	waitFor(t, 10*time.Second, "the health checks' metrics", func() bool {
		got = scrape(t, c, p.addrs.Admin)
		return got["outrigger_health_unhealthy_endpoints"] != nil && got["outrigger_health_checks_total"] != nil
	})
	// Each part's metrics are there: the check below has something to check.
	for _, name := range []string{
		"outrigger_build_info", "outrigger_config_reloads_total",
		"outrigger_proxy_requests_total", "outrigger_proxy_retries_total", "outrigger_proxy_fallbacks_total",
		"outrigger_proxy_faults_injected_total", "outrigger_proxy_upstream_connect_failures_total",
		"outrigger_proxy_zone_local_share", "outrigger_breaker_state", "outrigger_breaker_ejections_skipped_total",
		"outrigger_composer_requests_total", "outrigger_eventlog_produced_records_total",
	} {
		if got[name] == nil {
			t.Errorf("%s is not exported", name)
		}
	}
	for _, prefix := range []string{"go_", "process_"} {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(got)), func(n string) bool { return strings.HasPrefix(n, prefix) }) {
			t.Errorf("no %s* metric is exported", prefix)
		}
	}

	rows, _ := documentedMetrics(t)
	for _, name := range slices.Sorted(maps.Keys(got)) {
		f := got[name]
		if f.help == "" {
			t.Errorf("%s has no help text", name)
		}
		if !strings.HasPrefix(name, "outrigger_") {
			continue
		}
		if len(rows[name]) == 0 {
			t.Errorf("%s (a %s, labels %v) is exported but in no metrics table of the docs", name, f.typ, slices.Sorted(maps.Keys(f.labels)))
			continue
		}
		labels := slices.Sorted(maps.Keys(f.labels))
		for _, r := range rows[name] {
			if r.typ != f.typ {
				t.Errorf("%s: %s is exported as a %s, the docs say %s", r.at, name, f.typ, r.typ)
			}
			// A vector exports only the label values it has seen; with
			// none, no sample says what its labels are.
			if r.labels != nil && len(labels) > 0 && !slices.Equal(sorted(r.labels), labels) {
				t.Errorf("%s: %s is exported with labels %v, the docs say %v", r.at, name, labels, sorted(r.labels))
			}
		}
	}
}

// scrape reads /metrics: each family's type, help text and label names.
func scrape(t *testing.T, c *http.Client, admin string) map[string]*scrapedFamily {
	t.Helper()
	code, body, _ := get(t, c, "http://"+admin+"/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	out := map[string]*scrapedFamily{}
	family := func(name string) *scrapedFamily {
		if out[name] == nil {
			out[name] = &scrapedFamily{labels: map[string]bool{}}
		}
		return out[name]
	}
	var current string // the family of the last # TYPE line
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, help, _ := strings.Cut(rest, " ")
			family(name).help = help
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			family(name).typ = typ
			current = name
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// A sample: name{a="x",b="y"} value. Label values may hold
		// commas and braces; the names sit before each ="...".
		name, labels, ok := strings.Cut(line, "{")
		if !ok {
			name, _, _ = strings.Cut(line, " ")
		}
		if !strings.HasPrefix(name, current) {
			t.Fatalf("/metrics: sample %q outside its family %q", line, current)
		}
		f := family(current)
		for ok && !strings.HasPrefix(labels, "}") {
			k, v, ok := strings.Cut(labels, `="`)
			if !ok {
				break
			}
			if k != "le" || f.typ != "histogram" {
				f.labels[k] = true
			}
			// Skip the quoted value, escapes included.
			i := 0
			for i < len(v) && v[i] != '"' {
				if v[i] == '\\' {
					i++
				}
				i++
			}
			labels = strings.TrimPrefix(v[min(i+1, len(v)):], ",")
		}
	}
	return out
}
