package main

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestExampleComposesTheShop(t *testing.T) {
	var out strings.Builder
	if err := run(&out, options{listen: "127.0.0.1:0", check: true, anyPort: true, minCallTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"GET /orders/1/details -> 200\n",
		`"shipments":[{"carrier":"DHL","status":"delivered","tracking":"JD014"},{"carrier":"DHL","status":"in_transit","tracking":"JD015"}]`,
		`"customer":{"email":"ada@example.com","id":7,"name":"Ada Lovelace"}`,
		"GET /orders/404/details -> 404\n" + `{"error":"no such order"}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "internalNotes") {
		t.Errorf("dropped field present:\n%s", got)
	}
}

func TestExampleShowsAPartialResponse(t *testing.T) {
	var out strings.Builder
	if err := run(&out, options{listen: "127.0.0.1:0", check: true, anyPort: true, failShipments: true, minCallTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	want := `GET /orders/1/details -> 200 (x-outrigger-partial: shipments)`
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), `"reason":"upstream_status","http_status":503`) {
		t.Errorf("output:\n%s", out.String())
	}
}

// The composition.yaml beside the example is a complete sidecar config: the
// sidecar's own loader accepts it, composition included.
func TestCompositionYAMLIsAValidSidecarConfig(t *testing.T) {
	cfg, err := config.Parse(configYAML, "composition.yaml")
	if err != nil {
		t.Fatalf("the sidecar rejects composition.yaml: %v", err)
	}
	var found bool
	for _, r := range cfg.Routes {
		if r.Composition != nil && len(r.Composition.Calls) == 3 {
			found = true
		}
	}
	if !found {
		t.Error("no route with the three-call composition")
	}
}
