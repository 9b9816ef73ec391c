package eventlog

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzPublishBody feeds arbitrary bodies to the publish endpoint: it must
// answer 200 with one result per record, or a coded 4xx, never panic or 5xx.
func FuzzPublishBody(f *testing.F) {
	for _, s := range []string{
		`{"key":"k","value":{"a":1}}`,
		`{"records":[{"value":1},{"key_base64":"AAE=","value_base64":"/w=="}],"acks":"1"}`,
		`{"value":null,"headers":{"h":"v"},"partition":1}`,
		`{"records":[]}`, `{"value":`, `[]`, `null`, `{"acks":0,"value":"x"}`,
	} {
		f.Add(s)
	}
	tb := openTestBroker(f, f.TempDir(), ordersConfig(), nil, Options{})
	h := tb.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/topics/orders/records?acks=1", strings.NewReader(body)))
		switch {
		case w.Code == http.StatusOK:
			var out publishResponse
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || len(out.Records) == 0 {
				t.Fatalf("200 with %q", w.Body.String())
			}
		case w.Code >= 400 && w.Code < 500:
			var e errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" {
				t.Fatalf("%d without a coded error: %q", w.Code, w.Body.String())
			}
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body.String())
		}
	})
}

// FuzzOffsetKey: decoding a key from __consumer_offsets never panics, and
// whatever decodes encodes back to the same bytes.
func FuzzOffsetKey(f *testing.F) {
	f.Add([]byte("billing/orders/3"))
	f.Add([]byte("a/b"))
	f.Add([]byte("g/t/-1/x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, ok := decodeOffsetKey(b)
		if !ok {
			return
		}
		k2, ok := decodeOffsetKey(k.encode())
		if !ok || k2 != k {
			t.Fatalf("%q -> %+v -> %q -> %+v", b, k, k.encode(), k2)
		}
	})
}
