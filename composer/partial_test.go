package composer

import (
	"net/http"
	"testing"
)

// A composition of one optional call that fails answers as any partial
// response does: 200 with x-outrigger-partial. The backend's status passes
// through only with the backend's result.
func TestSingleOptionalCallFailureIsPartialNotTheBackendsStatus(t *testing.T) {
	e := newEnv(t)
	e.service("flaky", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":"boom"}`))
	}))
	url, _ := e.serve("GET /extra", Spec{Calls: []Call{{Name: "extra", Cluster: "flaky", Path: "/extra", Optional: true}}}, Options{})
	r := e.get(url + "/extra")
	if r.status != http.StatusOK || r.header.Get(HeaderPartial) != "extra" {
		t.Fatalf("status %d partial %q body %s", r.status, r.header.Get(HeaderPartial), r.body)
	}
}
