package eventlog

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

type pubResp struct {
	Records  []ProduceResult `json:"records"`
	Replayed bool            `json:"replayed"`
	Error    string          `json:"error"`
	Code     string          `json:"code"`
}

type fetchResp struct {
	Records        []jsonRecord `json:"records"`
	NextOffset     int64        `json:"next_offset"`
	HighWatermark  int64        `json:"high_watermark"`
	LogStartOffset int64        `json:"log_start_offset"`
	Error          string       `json:"error"`
	Code           string       `json:"code"`
}

func ordersConfig() Config {
	return Config{Topics: map[string]TopicConfig{
		"orders": {Partitions: 3, MaxMessageBytes: 1024},
	}}
}

func TestPublishAndFetchOverHTTP(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), ordersConfig(), nil, Options{})
	// One record, keyed: lands where Kafka's partitioner puts it.
	var one pubResp
	st := call(t, "POST", tb.api.URL+"/v1/topics/orders/records",
		`{"key":"customer-42","value":{"total":12.5},"headers":{"trace":"abc"}}`, nil, &one)
	if st != 200 || len(one.Records) != 1 {
		t.Fatalf("publish one: %d %+v", st, one)
	}
	wantP := int32(KeyPartition([]byte("customer-42"), 3))
	if one.Records[0].Partition != wantP || one.Records[0].Offset != 0 {
		t.Fatalf("landed at %+v, want partition %d offset 0", one.Records[0], wantP)
	}
	// A batch: same key keeps order in one partition; base64 values.
	bin := base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255})
	var batch pubResp
	st = call(t, "POST", tb.api.URL+"/v1/topics/orders/records?acks=1", fmt.Sprintf(
		`{"records":[{"key":"customer-42","value":"second"},{"key":"customer-42","value_base64":%q},{"key":"customer-42","value":[1,2]}]}`, bin),
		nil, &batch)
	if st != 200 || len(batch.Records) != 3 {
		t.Fatalf("publish batch: %d %+v", st, batch)
	}
	for i, r := range batch.Records {
		if r.Partition != wantP || r.Offset != int64(i+1) {
			t.Fatalf("batch record %d at %+v", i, r)
		}
	}
	var f fetchResp
	st = call(t, "GET", fmt.Sprintf("%s/v1/topics/orders/partitions/%d/records?offset=0", tb.api.URL, wantP), nil, nil, &f)
	if st != 200 || len(f.Records) != 4 || f.NextOffset != 4 || f.HighWatermark != 4 {
		t.Fatalf("fetch: %d %+v", st, f)
	}
	if string(f.Records[0].Value) != `{"total":12.5}` || f.Records[0].Headers["trace"] != "abc" || *f.Records[0].Key != "customer-42" {
		t.Fatalf("record 0: %+v", f.Records[0])
	}
	if string(f.Records[1].Value) != `"second"` {
		t.Fatalf("record 1 value %s", f.Records[1].Value)
	}
	if f.Records[2].ValueBase64 == nil || *f.Records[2].ValueBase64 != bin {
		t.Fatalf("record 2 binary value: %+v", f.Records[2])
	}
	// Offset from the middle, small max_bytes: at least one record.
	st = call(t, "GET", fmt.Sprintf("%s/v1/topics/orders/partitions/%d/records?offset=2&max_bytes=1", tb.api.URL, wantP), nil, nil, &f)
	if st != 200 || len(f.Records) != 1 || *f.Records[0].Offset != 2 || f.NextOffset != 3 {
		t.Fatalf("fetch from 2: %d %+v", st, f)
	}
}

func TestKeylessRecordsStickPerBatchAndSpread(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), ordersConfig(), nil, Options{})
	seen := map[int32]int{}
	for range 6 {
		var r pubResp
		call(t, "POST", tb.api.URL+"/v1/topics/orders/records", `{"records":[{"value":1},{"value":2}]}`, nil, &r)
		if r.Records[0].Partition != r.Records[1].Partition {
			t.Fatalf("keyless batch split across partitions: %+v", r.Records)
		}
		seen[r.Records[0].Partition]++
	}
	if len(seen) != 3 {
		t.Fatalf("keyless batches did not spread: %v", seen)
	}
}

func TestAcks(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), ordersConfig(), nil, Options{})
	for _, c := range []struct {
		query, body string
		status      int
	}{
		{"?acks=all", `{"key":"k","value":1}`, 200},
		{"?acks=1", `{"key":"k","value":2}`, 200},
		{"", `{"key":"k","value":3,"acks":"all"}`, 200},
		{"", `{"key":"k","value":4,"acks":1}`, 200},
		{"", `{"key":"k","value":5}`, 200},
		{"?acks=0", `{"key":"k","value":6}`, 202},
		{"?acks=2", `{"key":"k","value":7}`, 400},
		{"?acks=1", `{"key":"k","value":8,"acks":"all"}`, 400},
	} {
		var r pubResp
		st := call(t, "POST", tb.api.URL+"/v1/topics/orders/records"+c.query, c.body, nil, &r)
		if st != c.status {
			t.Fatalf("%s %s: status %d (%+v), want %d", c.query, c.body, st, r, c.status)
		}
		if st == 202 && r.Records[0].Offset != -1 {
			t.Fatalf("acks=0 reported offset %d", r.Records[0].Offset)
		}
		if st == 200 && r.Records[0].Offset < 0 {
			t.Fatalf("acks>0 without offset: %+v", r)
		}
	}
	// The acks=0 record becomes readable.
	p := KeyPartition([]byte("k"), 3)
	part, _ := tb.Topic("orders")
	pp, _ := part.Partition(p)
	eventually(t, "acks=0 record appended", func() bool { return pp.HighWatermark() == 6 })
}

func TestIdempotencyKeySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	tb := openTestBroker(t, dir, ordersConfig(), nil, Options{})
	h := http.Header{"Idempotency-Key": {"order-7-create"}}
	body := `{"records":[{"key":"a","value":1},{"key":"b","value":2}]}`
	var first, again pubResp
	if st := call(t, "POST", tb.api.URL+"/v1/topics/orders/records", body, h, &first); st != 200 || first.Replayed {
		t.Fatalf("first publish: %d %+v", st, first)
	}
	if st := call(t, "POST", tb.api.URL+"/v1/topics/orders/records", body, h, &again); st != 200 || !again.Replayed {
		t.Fatalf("retry: %d %+v", st, again)
	}
	if fmt.Sprint(first.Records) != fmt.Sprint(again.Records) {
		t.Fatalf("retry result %v differs from %v", again.Records, first.Records)
	}
	// Same key on another topic is another key.
	hwBefore := totalHW(t, tb)
	tb.close()

	tb = openTestBroker(t, dir, ordersConfig(), nil, Options{})
	var afterRestart pubResp
	if st := call(t, "POST", tb.api.URL+"/v1/topics/orders/records", body, h, &afterRestart); st != 200 || !afterRestart.Replayed {
		t.Fatalf("retry after restart: %d %+v", st, afterRestart)
	}
	if fmt.Sprint(first.Records) != fmt.Sprint(afterRestart.Records) {
		t.Fatalf("result after restart %v differs from %v", afterRestart.Records, first.Records)
	}
	if got := totalHW(t, tb); got != hwBefore {
		t.Fatalf("retries appended records: %d -> %d", hwBefore, got)
	}
	// A new key appends.
	var other pubResp
	call(t, "POST", tb.api.URL+"/v1/topics/orders/records", body, http.Header{"Idempotency-Key": {"order-8"}}, &other)
	if other.Replayed || totalHW(t, tb) != hwBefore+2 {
		t.Fatalf("new key: %+v", other)
	}
}

func TestIdempotencyWindowExpires(t *testing.T) {
	clock := newFakeClock()
	cfg := ordersConfig()
	cfg.Idempotency = IdempotencyConfig{Window: time.Hour}
	tb := openTestBroker(t, t.TempDir(), cfg, clock.Now, Options{})
	h := http.Header{"Idempotency-Key": {"k1"}}
	var r pubResp
	call(t, "POST", tb.api.URL+"/v1/topics/orders/records", `{"key":"a","value":1}`, h, &r)
	clock.Advance(59 * time.Minute)
	r = pubResp{}
	call(t, "POST", tb.api.URL+"/v1/topics/orders/records", `{"key":"a","value":1}`, h, &r)
	if !r.Replayed {
		t.Fatal("replay inside the window expected")
	}
	clock.Advance(2 * time.Minute)
	r = pubResp{}
	call(t, "POST", tb.api.URL+"/v1/topics/orders/records", `{"key":"a","value":1}`, h, &r)
	if r.Replayed || r.Records[0].Offset != 1 {
		t.Fatalf("after the window the key is forgotten: %+v", r)
	}
}

func totalHW(t *testing.T, tb *testBroker) int64 {
	t.Helper()
	top, err := tb.Topic("orders")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range top.Partitions() {
		n += p.HighWatermark()
	}
	return n
}

func TestLongPollWakesOnPublishAndTimesOut(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), ordersConfig(), nil, Options{})
	p := KeyPartition([]byte("k"), 3)
	url := fmt.Sprintf("%s/v1/topics/orders/partitions/%d/records?offset=0&wait=20s", tb.api.URL, p)
	done := make(chan fetchResp, 1)
	start := time.Now()
	go func() {
		var f fetchResp
		call(t, "GET", url, nil, nil, &f)
		done <- f
	}()
	// Publish once the poll is parked, so that the record is only seen by a
	// woken waiter.
	waitParked(t, tb, 1)
	call(t, "POST", tb.api.URL+"/v1/topics/orders/records", `{"key":"k","value":"wake"}`, nil, nil)
	select {
	case f := <-done:
		if len(f.Records) != 1 || string(f.Records[0].Value) != `"wake"` {
			t.Fatalf("woken fetch: %+v", f)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("long poll returned after %v", el)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("long poll not woken")
	}
	// Nothing new: returns empty after the wait.
	start = time.Now()
	var f fetchResp
	st := call(t, "GET", fmt.Sprintf("%s/v1/topics/orders/partitions/%d/records?offset=1&wait=150ms", tb.api.URL, p), nil, nil, &f)
	if st != 200 || len(f.Records) != 0 || f.NextOffset != 1 {
		t.Fatalf("timed-out poll: %d %+v", st, f)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("returned after %v, before the wait", el)
	}
}

func TestBadInputGivesCodedErrors(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), ordersConfig(), nil, Options{})
	call(t, "POST", tb.api.URL+"/v1/topics/orders/records", `{"key":"k","value":1,"partition":0}`, nil, nil)
	big := strings.Repeat("x", 2000)
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown topic publish", "POST", "/v1/topics/nope/records", `{"value":1}`, 404, "unknown_topic"},
		{"unknown topic fetch", "GET", "/v1/topics/nope/partitions/0/records?offset=0", "", 404, "unknown_topic"},
		{"unknown partition fetch", "GET", "/v1/topics/orders/partitions/9/records?offset=0", "", 404, "unknown_partition"},
		{"non-numeric partition", "GET", "/v1/topics/orders/partitions/x/records?offset=0", "", 404, "unknown_partition"},
		{"unknown partition publish", "POST", "/v1/topics/orders/records", `{"value":1,"partition":3}`, 404, "unknown_partition"},
		{"oversized record", "POST", "/v1/topics/orders/records", `{"value":"` + big + `"}`, 413, "record_too_large"},
		{"malformed json", "POST", "/v1/topics/orders/records", `{"value":`, 400, "malformed_json"},
		{"not json", "POST", "/v1/topics/orders/records", `hello`, 400, "malformed_json"},
		{"empty body", "POST", "/v1/topics/orders/records", ``, 400, "malformed_json"},
		{"unknown field", "POST", "/v1/topics/orders/records", `{"valeu":1}`, 400, "bad_request"},
		{"bad base64", "POST", "/v1/topics/orders/records", `{"value_base64":"***"}`, 400, "bad_request"},
		{"value and base64", "POST", "/v1/topics/orders/records", `{"value":1,"value_base64":"AA=="}`, 400, "bad_request"},
		{"keyless tombstone", "POST", "/v1/topics/orders/records", `{}`, 400, "bad_request"},
		{"empty batch", "POST", "/v1/topics/orders/records", `{"records":[]}`, 400, "bad_request"},
		{"offset assigned by log", "POST", "/v1/topics/orders/records", `{"value":1,"offset":3}`, 400, "bad_request"},
		{"reserved topic", "POST", "/v1/topics/__consumer_offsets/records", `{"value":1}`, 403, "reserved_topic"},
		{"offset past end", "GET", "/v1/topics/orders/partitions/0/records?offset=5", "", 416, "offset_out_of_range"},
		{"negative offset", "GET", "/v1/topics/orders/partitions/0/records?offset=-1", "", 416, "offset_out_of_range"},
		{"missing offset", "GET", "/v1/topics/orders/partitions/0/records", "", 416, "offset_out_of_range"},
		{"bad max_bytes", "GET", "/v1/topics/orders/partitions/0/records?offset=0&max_bytes=0", "", 400, "bad_request"},
		{"bad wait", "GET", "/v1/topics/orders/partitions/0/records?offset=0&wait=forever", "", 400, "bad_request"},
		{"unknown endpoint", "GET", "/v1/nothing", "", 404, "not_found"},
		{"join unknown topic", "POST", "/v1/groups/g/members", `{"topics":["nope"]}`, 404, "unknown_topic"},
		{"join no topics", "POST", "/v1/groups/g/members", `{"topics":[]}`, 400, "bad_request"},
		{"heartbeat unknown member", "POST", "/v1/groups/g/members/m-1/heartbeat", "", 404, "unknown_member"},
		{"commit without generation", "POST", "/v1/groups/g/members/m-1/commit", `{}`, 400, "bad_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e errorBody
			st := call(t, c.method, tb.api.URL+c.path, c.body, nil, &e)
			if st != c.status || e.Code != c.code || e.Error == "" {
				t.Fatalf("got %d %+v, want %d %s", st, e, c.status, c.code)
			}
			if c.code == "offset_out_of_range" && (e.LogStartOffset == nil || e.HighWatermark == nil || *e.HighWatermark != 1) {
				t.Fatalf("range missing: %+v", e)
			}
		})
	}
	// Nothing was lost or added by the bad requests.
	if got := totalHW(t, tb); got != 1 {
		t.Fatalf("high watermarks sum to %d, want 1", got)
	}
}

func TestRequestBodyLimit(t *testing.T) {
	cfg := ordersConfig()
	cfg.MaxRequestBytes = 512
	tb := openTestBroker(t, t.TempDir(), cfg, nil, Options{})
	var e errorBody
	st := call(t, "POST", tb.api.URL+"/v1/topics/orders/records", `{"value":"`+strings.Repeat("y", 600)+`"}`, nil, &e)
	if st != 413 || e.Code != "request_too_large" {
		t.Fatalf("got %d %+v", st, e)
	}
}

// A path that one of the endpoints serves, asked with a method none of
// them takes, is answered 405 method_not_allowed with an Allow header
// naming the methods it takes (RFC 9110 §15.5.6), on the app API and
// the admin API alike; a path none serves stays 404 not_found.
func TestAMethodAPathDoesNotTakeIs405WithAllow(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), ordersConfig(), nil, Options{})
	for _, tc := range []struct {
		base, method, path string
		status             int
		code, allow        string
	}{
		{tb.admin.URL, "PUT", "/topics", 405, "method_not_allowed", "GET, HEAD, POST"},
		{tb.admin.URL, "POST", "/groups", 405, "method_not_allowed", "GET, HEAD"},
		{tb.admin.URL, "PUT", "/topics/orders", 405, "method_not_allowed", "DELETE, GET, HEAD"},
		{tb.admin.URL, "GET", "/groups/g/offsets/reset", 405, "method_not_allowed", "POST"},
		{tb.admin.URL, "GET", "/nowhere", 404, "not_found", ""},
		{tb.api.URL, "GET", "/v1/topics/orders/records", 405, "method_not_allowed", "POST"},
		{tb.api.URL, "PUT", "/v1/groups/g", 405, "method_not_allowed", "GET, HEAD"},
		{tb.api.URL, "GET", "/v1/nowhere", 404, "not_found", ""},
	} {
		req, err := http.NewRequest(tc.method, tc.base+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e errorBody
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.status || e.Code != tc.code || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: got %d %q, Allow %q (%v); want %d %q, Allow %q",
				tc.method, tc.path, resp.StatusCode, e.Code, resp.Header.Get("Allow"), err, tc.status, tc.code, tc.allow)
		}
	}
}
