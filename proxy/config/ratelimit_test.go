package config

import (
	"testing"
	"time"
)

// The effective configuration names the tokens_per_fill a rate limit
// that leaves it out gets, Envoy's default of one token, and keeps one
// that sets it.
func TestRateLimitDefaultsToOneTokenPerFill(t *testing.T) {
	cfg, err := decode([]byte(`
clusters:
  a: {endpoints: ["10.0.0.1:80"]}
routes:
  - cluster: a
    rate_limit: {max_tokens: 10, fill_interval: 1s}
  - cluster: a
    rate_limit: {max_tokens: 10, tokens_per_fill: 4, fill_interval: 250ms}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	eff := cfg.WithDefaults()
	want := []RateLimit{
		{MaxTokens: 10, TokensPerFill: 1, FillInterval: time.Second},
		{MaxTokens: 10, TokensPerFill: 4, FillInterval: 250 * time.Millisecond},
	}
	for i, w := range want {
		if got := *eff.Routes[i].RateLimit; got != w {
			t.Errorf("routes[%d].rate_limit = %+v, want %+v", i, got, w)
		}
	}
	if cfg.Routes[0].RateLimit.TokensPerFill != 0 {
		t.Errorf("WithDefaults changed the configuration it was given")
	}
}
