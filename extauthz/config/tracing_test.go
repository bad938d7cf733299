package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTracingDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	one := 1.0
	want := Tracing{Protocol: "http/protobuf", SamplingRatio: &one}
	if diff := cmp.Diff(want, c.Tracing); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	// An explicit 0 stays 0: only Envoy's sampled traces are traced.
	c, err = Parse([]byte(minimal+"\ntracing: {enabled: true, sampling_ratio: 0}\n"), "/etc/tt")
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing.Ratio() != 0 {
		t.Errorf("sampling_ratio 0 became %v", c.Tracing.Ratio())
	}
}

func TestTracingValidation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		block     string
		wantField string
	}{
		{name: "unknown protocol", block: `{protocol: http/json}`, wantField: "tracing.protocol"},
		{name: "ratio above 1", block: `{sampling_ratio: 1.5}`, wantField: "tracing.sampling_ratio"},
		{name: "negative ratio", block: `{sampling_ratio: -0.1}`, wantField: "tracing.sampling_ratio"},
		{name: "endpoint without scheme", block: `{endpoint: "collector:4317"}`, wantField: "tracing.endpoint"},
		{name: "endpoint of another scheme", block: `{endpoint: "grpc://collector:4317"}`, wantField: "tracing.endpoint"},
		{name: "endpoint with credentials", block: `{endpoint: "https://user:pw@collector:4318"}`, wantField: "tracing.endpoint"},
		{name: "endpoint with a query", block: `{endpoint: "https://collector:4318/v1/traces?key=k"}`, wantField: "tracing.endpoint"},
		{name: "grpc endpoint with a path", block: `{protocol: grpc, endpoint: "http://collector:4317/v1/traces"}`, wantField: "tracing.endpoint"},
		{name: "empty resource key", block: `{resource_attributes: {" ": x}}`, wantField: "tracing.resource_attributes"},
		{name: "client cert without key", block: `{endpoint: "https://c:4318", tls: {cert_file: c.pem}}`, wantField: "tracing.tls"},
		{name: "tls toward a plaintext endpoint", block: `{endpoint: "http://c:4318", tls: {ca_file: ca.pem}}`, wantField: "tracing.tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal+"\ntracing: "+tc.block+"\n"), "/etc/tt")
			var fe FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if !strings.Contains(err.Error(), tc.wantField+":") {
				t.Errorf("err = %v, want one naming %s", err, tc.wantField)
			}
		})
	}
	// Valid forms.
	for _, block := range []string{
		`{enabled: true, endpoint: "http://127.0.0.1:4318"}`,
		`{enabled: true, endpoint: "https://collector.example:4318/otlp/v1/traces", tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem}}`,
		`{enabled: true, protocol: grpc, endpoint: "https://collector:4317/", sampling_ratio: 0.01}`,
	} {
		if _, err := Parse([]byte(minimal+"\ntracing: "+block+"\n"), "/etc/tt"); err != nil {
			t.Errorf("%s: %v", block, err)
		}
	}
}

// TestTracingKeyTellsRestartSettingsApart: a reload that changes any
// tracing field is told apart (tracing is read at start only).
func TestTracingKeyTellsRestartSettingsApart(t *testing.T) {
	base := "{enabled: true, endpoint: 'https://c:4318', sampling_ratio: 0.5, resource_attributes: {a: b}, tls: {ca_file: ca.pem}}"
	key := func(block string) string {
		t.Helper()
		c, err := Parse([]byte(minimal+"\ntracing: "+block+"\n"), "/etc/tt")
		if err != nil {
			t.Fatal(err)
		}
		return c.Tracing.Key()
	}
	if key(base) != key(base) {
		t.Fatal("the same block gave two keys")
	}
	for _, changed := range []string{
		strings.Replace(base, "enabled: true", "enabled: false", 1),
		strings.Replace(base, "c:4318", "d:4318", 1),
		strings.Replace(base, "0.5", "0.25", 1),
		strings.Replace(base, "{a: b}", "{a: c}", 1),
		strings.Replace(base, "ca.pem", "other.pem", 1),
		strings.Replace(base, "}}", "}, protocol: grpc}", 1),
	} {
		if key(changed) == key(base) {
			t.Errorf("%s has the key of %s", changed, base)
		}
	}
}
