package h1server

import (
	"io"
	"net/http"
	"testing"
)

// A handler that hands the writer a header map of its own, as a proxy
// hands over the upstream's, has it sent as if it had filled Header();
// a writer whose header was asked for, or which has written, refuses it.
func TestAdoptHeader(t *testing.T) {
	type adopter interface{ AdoptHeader(http.Header) bool }
	results := make(chan [3]bool, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := w.(adopter)
		var res [3]bool
		switch r.URL.Path {
		case "/adopt":
			h := http.Header{"X-Upstream": {"yes"}, "Content-Type": {"text/x-adopted"}}
			res[0] = a.AdoptHeader(h)
			h.Set("X-Later", "edited after") // still the response's map
			res[1] = a.AdoptHeader(http.Header{"X-Second": {"1"}})
		case "/asked":
			w.Header().Set("X-Own", "kept")
			res[0] = a.AdoptHeader(http.Header{"X-Upstream": {"yes"}})
		case "/written":
			w.WriteHeader(http.StatusAccepted)
			res[0] = a.AdoptHeader(http.Header{"X-Upstream": {"yes"}})
		}
		res[2] = a.AdoptHeader(nil)
		results <- res
		io.WriteString(w, "body")
	}))
	c := client(t)
	get := func(path string) *http.Response {
		t.Helper()
		resp, err := c.Get(ts.url(path))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "body" {
			t.Fatalf("%s: body %q", path, b)
		}
		return resp
	}

	resp := get("/adopt")
	if res := <-results; !res[0] || res[1] || res[2] {
		t.Errorf("/adopt: AdoptHeader = %v (first, second, nil), want true, false, false", res)
	}
	if resp.Header.Get("X-Upstream") != "yes" || resp.Header.Get("Content-Type") != "text/x-adopted" ||
		resp.Header.Get("X-Later") != "edited after" || resp.Header.Get("X-Second") != "" {
		t.Errorf("/adopt: header %q", resp.Header)
	}

	resp = get("/asked")
	if res := <-results; res[0] || res[2] {
		t.Errorf("/asked: AdoptHeader = %v, want false", res)
	}
	if resp.Header.Get("X-Own") != "kept" || resp.Header.Get("X-Upstream") != "" {
		t.Errorf("/asked: header %q", resp.Header)
	}

	resp = get("/written")
	if res := <-results; res[0] || res[2] {
		t.Errorf("/written: AdoptHeader = %v, want false", res)
	}
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Upstream") != "" {
		t.Errorf("/written: %d %q", resp.StatusCode, resp.Header)
	}
}
