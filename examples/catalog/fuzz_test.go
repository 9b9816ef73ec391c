package catalog

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAddItem feeds arbitrary bodies to POST /items: the answer is 201, 400
// or 409, never a panic, and an item accepted with 201 is then served by
// GET /items/{id}.
func FuzzAddItem(f *testing.F) {
	for _, s := range []string{
		`{"id":"9","name":"bilge pump","price_cents":1500,"stock":2}`,
		`{"id":"1","name":"dup"}`,
		`{"id":""}`,
		`{"id":"x","name":"y","extra":1}`,
		`[]`, `{`, `null`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		h := New("fuzz").Handler()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/items", strings.NewReader(body)))
		switch w.Code {
		case http.StatusBadRequest, http.StatusConflict:
			return
		case http.StatusCreated:
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
		var it Item
		if err := json.Unmarshal(w.Body.Bytes(), &it); err != nil {
			t.Fatalf("201 with body %q: %v", w.Body.String(), err)
		}
		g := httptest.NewRecorder()
		h.ServeHTTP(g, httptest.NewRequest("GET", "/items/"+it.ID, nil))
		if g.Code != http.StatusOK {
			t.Fatalf("added %+v, GET answered %d", it, g.Code)
		}
	})
}
