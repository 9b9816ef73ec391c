package proxy

import (
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/lb"
)

// A reload that leaves a maglev cluster's endpoints and weights as they
// were keeps its lookup table (65,537 slots, 256 KiB, milliseconds to
// build): a control plane's pushes would otherwise rebuild the table of
// every maglev cluster each time any part of the configuration changes.
// A reload that changes the endpoints or their weights builds a new one.
func TestMaglevTableKeptAcrossReloadsWithTheSameEndpoints(t *testing.T) {
	_, addrs := selfBackends(t, 3)
	cfg := maglevConfig(addrs, config.HashPolicy{Header: "x-user"})
	h := startProxy(t, cfg)
	picker := func() any { return h.p.snap.Load().clusters["svc"].picker }
	first := picker()

	// Another route's change: the cluster is compiled again.
	cfg2 := maglevConfig(addrs, config.HashPolicy{Header: "x-user"})
	cfg2.Routes[0].Timeout = 3 * cfg2.Routes[0].Timeout
	if err := h.p.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	if picker() != first {
		t.Fatal("a reload with the same endpoints built the lookup table again")
	}
	if via(t, h, "/", "x-user", "u1") != owner(addrs, lb.Hash("u1")) {
		t.Fatal("the kept table does not pick the key's owner")
	}

	for name, mod := range map[string]func(*config.Cluster){
		"an endpoint removed": func(c *config.Cluster) { c.Endpoints = c.Endpoints[:2] },
		"a weight changed":    func(c *config.Cluster) { c.Endpoints[1].Weight = 5 },
		"the order changed":   func(c *config.Cluster) { c.Endpoints[0], c.Endpoints[1] = c.Endpoints[1], c.Endpoints[0] },
	} {
		before := picker()
		next := maglevConfig(addrs, config.HashPolicy{Header: "x-user"})
		c := next.Clusters["svc"]
		c.Endpoints = append([]config.Endpoint(nil), c.Endpoints...)
		mod(&c)
		next.Clusters["svc"] = c
		if err := h.p.Apply(next); err != nil {
			t.Fatal(err)
		}
		if picker() == before {
			t.Fatalf("%s: the lookup table was kept", name)
		}
		if err := h.p.Apply(cfg); err != nil {
			t.Fatal(err)
		}
	}
}
