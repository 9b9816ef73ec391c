package breaker

import (
	"net/http"
	"strings"
	"testing"
)

func TestClassifierDefaults(t *testing.T) {
	c, err := NewClassifier(ClassifierConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		o       Outcome
		failure bool
		gateway bool
		reason  string
	}{
		{Outcome{HTTPStatus: 200, GRPCStatus: -1}, false, false, "http_200"},
		{Outcome{HTTPStatus: 404, GRPCStatus: -1}, false, false, "http_404"},
		{Outcome{HTTPStatus: 429, GRPCStatus: -1}, false, false, "http_429"},
		{Outcome{HTTPStatus: 500, GRPCStatus: -1}, true, false, "http_500"},
		{Outcome{HTTPStatus: 503, GRPCStatus: -1}, true, true, "http_503"},
		{Outcome{HTTPStatus: 504}, true, true, "http_504"},
		{Outcome{HTTPStatus: 599}, true, false, "http_599"},
		{Outcome{HTTPStatus: 700}, true, false, "http_invalid"},
		{Outcome{Transport: TransportConnectFailure, GRPCStatus: -1}, true, true, "connect_failure"},
		{Outcome{Transport: TransportReset}, true, true, "reset"},
		{Outcome{Transport: TransportTimeout}, true, true, "timeout"},
		{Outcome{Transport: TransportOther}, true, false, "transport_error"},
		{Outcome{Transport: TransportReset, HTTPStatus: 200}, true, true, "reset"}, // reset mid-body
		{Outcome{HTTPStatus: 200, GRPCStatus: 0}, false, false, "http_200"},
		{Outcome{HTTPStatus: 200, GRPCStatus: 14}, true, true, "grpc_unavailable"},
		{Outcome{HTTPStatus: 200, GRPCStatus: 4}, true, true, "grpc_deadline_exceeded"},
		{Outcome{HTTPStatus: 200, GRPCStatus: 13}, true, false, "grpc_internal"},
		{Outcome{HTTPStatus: 200, GRPCStatus: 8}, true, false, "grpc_resource_exhausted"},
		{Outcome{HTTPStatus: 200, GRPCStatus: 5}, false, false, "grpc_not_found"},
		{Outcome{HTTPStatus: 200, GRPCStatus: 1}, false, false, "grpc_cancelled"},
		{Outcome{HTTPStatus: 200, GRPCStatus: 99}, false, false, "grpc_unknown"},
		{Outcome{}, false, false, "ok"},
	}
	for _, tc := range tests {
		v := c.Classify(tc.o)
		if v.Failure != tc.failure || v.Gateway != tc.gateway || v.Reason != tc.reason {
			t.Errorf("Classify(%+v) = %+v, want failure=%v gateway=%v reason=%q", tc.o, v, tc.failure, tc.gateway, tc.reason)
		}
	}
	// The nil and zero classifiers classify with the defaults.
	var zero Classifier
	var nilc *Classifier
	for _, tc := range tests {
		if zero.Classify(tc.o) != c.Classify(tc.o) || nilc.Classify(tc.o) != c.Classify(tc.o) {
			t.Errorf("zero/nil classifier differs from default on %+v", tc.o)
		}
	}
}

func TestClassifierConfigured(t *testing.T) {
	c, err := NewClassifier(ClassifierConfig{
		HTTPStatuses: []string{"500", "429", "520-529"},
		GRPCStatuses: []string{"cancelled", "8"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o       Outcome
		failure bool
	}{
		{Outcome{HTTPStatus: 500}, true},
		{Outcome{HTTPStatus: 501}, false},
		{Outcome{HTTPStatus: 429}, true},
		{Outcome{HTTPStatus: 525}, true},
		{Outcome{HTTPStatus: 503}, true}, // gateway errors always are
		{Outcome{HTTPStatus: 200, GRPCStatus: 1}, true},
		{Outcome{HTTPStatus: 200, GRPCStatus: 8}, true},
		{Outcome{HTTPStatus: 200, GRPCStatus: 13}, false}, // INTERNAL no longer listed
		{Outcome{HTTPStatus: 200, GRPCStatus: 14}, true},  // gateway
	} {
		if v := c.Classify(tc.o); v.Failure != tc.failure {
			t.Errorf("Classify(%+v).Failure = %v, want %v", tc.o, v.Failure, tc.failure)
		}
	}
	none, err := NewClassifier(ClassifierConfig{HTTPStatuses: []string{"none"}, GRPCStatuses: []string{"NONE"}})
	if err != nil {
		t.Fatal(err)
	}
	if none.Classify(Outcome{HTTPStatus: 500}).Failure || none.Classify(Outcome{GRPCStatus: 13}).Failure {
		t.Error(`"none" still classifies 500 / INTERNAL as failures`)
	}
	if !none.Classify(Outcome{HTTPStatus: 502}).Failure {
		t.Error(`"none" dropped the gateway error 502`)
	}
}

func TestClassifierConfigValidateNamesEntries(t *testing.T) {
	err := ClassifierConfig{
		HTTPStatuses: []string{"5xx", "600", "510-500", "abc"},
		GRPCStatuses: []string{"UNAVAILABLE", "NOPE", "17", "none"},
	}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"http_statuses[1]:", "http_statuses[2]:", "http_statuses[3]:", "grpc_statuses[1]:", "grpc_statuses[2]:", "grpc_statuses[3]:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "http_statuses[0]") || strings.Contains(err.Error(), "grpc_statuses[0]") {
		t.Errorf("valid entries reported: %v", err)
	}
}

func TestParseGRPCStatus(t *testing.T) {
	h := func(kv ...string) http.Header {
		m := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = append(m[kv[i]], kv[i+1])
		}
		return m
	}
	tests := []struct {
		name            string
		header, trailer http.Header
		want            int
	}{
		{"in trailers", h("Content-Type", "application/grpc"), h("Grpc-Status", "14"), 14},
		{"trailers win over headers", h("Grpc-Status", "0"), h("Grpc-Status", "13"), 13},
		{"trailers-only response in headers", h("Grpc-Status", "4"), nil, 4},
		{"lowercase key set by hand", nil, h("grpc-status", "8"), 8},
		{"absent", h("Content-Type", "application/grpc"), http.Header{}, -1},
		{"malformed is UNKNOWN", nil, h("Grpc-Status", "fourteen"), 2},
		{"negative is UNKNOWN", nil, h("Grpc-Status", "-3"), 2},
		{"empty is UNKNOWN", nil, h("Grpc-Status", ""), 2},
		{"spaces tolerated", nil, h("Grpc-Status", " 14 "), 14},
	}
	for _, tc := range tests {
		if got := ParseGRPCStatus(tc.header, tc.trailer); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
	c, _ := NewClassifier(ClassifierConfig{})
	v := c.Classify(Outcome{HTTPStatus: 200, GRPCStatus: ParseGRPCStatus(h("Content-Type", "application/grpc"), h("Grpc-Status", "14"))})
	if !v.Failure || !v.Gateway {
		t.Errorf("UNAVAILABLE in trailers: %+v", v)
	}
}

func FuzzParseGRPCStatus(f *testing.F) {
	for _, s := range []string{"0", "14", "", "-1", "99999999999", " 4", "x"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, v string, inTrailer bool) {
		hdr := http.Header{"Grpc-Status": {v}}
		var got int
		if inTrailer {
			got = ParseGRPCStatus(nil, hdr)
		} else {
			got = ParseGRPCStatus(hdr, nil)
		}
		if got < 0 {
			t.Fatalf("present value %q parsed as %d", v, got)
		}
		// Classifying any parsed status is safe and never allocates a
		// reason.
		if r := defaultClassifier.Classify(Outcome{HTTPStatus: 200, GRPCStatus: got}).Reason; r == "" {
			t.Fatalf("no reason for grpc status %d", got)
		}
	})
}

func FuzzClassifierConfig(f *testing.F) {
	for _, s := range []string{"5xx", "500-599", "429", "none", "UNAVAILABLE", "14", "4xx", "599-500"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		cfg := ClassifierConfig{HTTPStatuses: []string{entry}, GRPCStatuses: []string{entry}}
		c, err := NewClassifier(cfg)
		if (err == nil) != (cfg.Validate() == nil) {
			t.Fatalf("NewClassifier and Validate disagree on %q", entry)
		}
		if err != nil {
			return
		}
		for s := 100; s < 600; s++ {
			v := c.Classify(Outcome{HTTPStatus: s})
			if v.Gateway && !v.Failure {
				t.Fatalf("gateway error %d not a failure", s)
			}
		}
	})
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	c, _ := NewClassifier(ClassifierConfig{})
	o := Outcome{HTTPStatus: 200, GRPCStatus: 14}
	if n := testing.AllocsPerRun(100, func() { _ = c.Classify(o) }); n != 0 {
		t.Fatalf("%v allocs per Classify", n)
	}
}
