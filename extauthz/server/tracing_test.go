package server

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokentailor/tokentailor/extauthz/authztest"
)

// tracedConfig is modesConfig (JWT, introspection and exchange routes) with
// tracing on.
const tracedConfig = modesConfig + `
tracing:
  enabled: true
`

// tracedHarness runs modesConfig with tracing on, its spans going to an
// in-memory exporter.
func tracedHarness(t *testing.T) (*harness, *tracetest.InMemoryExporter, *authztest.Introspection, *authztest.Exchange) {
	t.Helper()
	t.Setenv("TT_TEST_CLIENT_SECRET", "s3cret")
	exp := tracetest.NewInMemoryExporter()
	var intro *authztest.Introspection
	var ex *authztest.Exchange
	h := startHarnessWith(t, tracedConfig, func(is *authztest.Issuer) {
		intro = is.Introspection(t, authztest.WithClientSecret("tokentailor", "s3cret"))
		ex = is.Exchange(t, authztest.WithClientSecret("tokentailor", "s3cret"))
	}, nil, func(o *Options) { o.SpanExporter = exp })
	h.waitReady()
	return h, exp, intro, ex
}

// Parents the journeys come with, as Envoy would send them.
const (
	w3cTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	w3cTrace2 = "5ca03f4688c45eb7b4df03a1f1f15847"
	w3cParent = "00f067aa0ba902b7"
	b3Trace   = "80f198ee56343ba864fe8b2a57d3eff7"
	b3Parent  = "e457b5a2e4d86bd1"
	b3mTrace  = "463ac35c9f6413ad48485a3953bb6124"
	b3mParent = "a2fb4a1d1a96d312"
)

// traceOf returns the spans of trace id, the Check span first.
func traceOf(t *testing.T, exp *tracetest.InMemoryExporter, id string) (check tracetest.SpanStub, children []tracetest.SpanStub) {
	t.Helper()
	var found bool
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() != id {
			continue
		}
		if s.Name == CheckSpanName {
			if found {
				t.Fatalf("two Check spans in trace %s", id)
			}
			check, found = s, true
		} else {
			children = append(children, s)
		}
	}
	if !found {
		t.Fatalf("no Check span in trace %s; spans: %v", id, names(exp.GetSpans()))
	}
	return check, children
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name+"@"+s.SpanContext.TraceID().String())
	}
	return out
}

// attrs is a span's attributes as strings.
func attrs(kv []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, a := range kv {
		m[string(a.Key)] = a.Value.Emit()
	}
	return m
}

// TestCheckSpanJoinsTheRequestsTrace: each journey's Check span is a server
// span in the trace Envoy's headers name (W3C, B3 single, B3 multi), a child
// of Envoy's span, with the decision, route, reason, issuer and cache hits
// as attributes; calls to the issuer are its client children.
func TestCheckSpanJoinsTheRequestsTrace(t *testing.T) {
	h, exp, intro, _ := tracedHarness(t)
	exp.Reset() // key fetches at start
	tests := []struct {
		name       string
		path       string
		headers    map[string]string
		trace      string
		parent     string
		want       map[string]string
		absent     []string
		wantClient int // client spans under the Check span (calls to the issuer)
	}{{
		name:    "allow with a JWT, W3C parent, caches cold",
		path:    "/orders/1",
		headers: map[string]string{"traceparent": "00-" + w3cTrace + "-" + w3cParent + "-01", "tracestate": "vendor=opaque"},
		trace:   w3cTrace, parent: w3cParent,
		want: map[string]string{"tokentailor.decision": "allow", "tokentailor.reason": "ok", "tokentailor.route": "orders",
			"tokentailor.issuer": h.is.URL(), "tokentailor.mode": "mint", "tokentailor.cache.jwt": "miss", "tokentailor.cache.mint": "miss"},
		absent: []string{"tokentailor.status"},
	}, {
		// A token's first Check keeps no minted token; its second does.
		name:    "the same JWT again: validation cache warm",
		path:    "/orders/2",
		headers: map[string]string{"traceparent": "00-" + w3cTrace2 + "-" + w3cParent + "-01"},
		trace:   w3cTrace2, parent: w3cParent,
		want: map[string]string{"tokentailor.decision": "allow", "tokentailor.route": "orders",
			"tokentailor.cache.jwt": "hit", "tokentailor.cache.mint": "miss"},
	}, {
		name:    "the same JWT a third time, B3 single-header parent, caches warm",
		path:    "/orders/2",
		headers: map[string]string{"b3": b3Trace + "-" + b3Parent + "-1"},
		trace:   b3Trace, parent: b3Parent,
		want: map[string]string{"tokentailor.decision": "allow", "tokentailor.route": "orders",
			"tokentailor.cache.jwt": "hit", "tokentailor.cache.mint": "hit"},
	}, {
		name:    "deny: insufficient scope, B3 multi-header parent",
		path:    "/orders/3",
		headers: map[string]string{"x-b3-traceid": b3mTrace, "x-b3-spanid": b3mParent, "x-b3-sampled": "1"},
		trace:   b3mTrace, parent: b3mParent,
		want: map[string]string{"tokentailor.decision": "deny", "tokentailor.reason": "scope_insufficient", "tokentailor.status": "403",
			"tokentailor.route": "orders", "tokentailor.issuer": h.is.URL()},
		absent: []string{"tokentailor.mode"},
	}, {
		name:    "introspection: the call to the issuer is a child span",
		path:    "/orders/4",
		headers: map[string]string{"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"},
		trace:   "11111111111111111111111111111111", parent: "2222222222222222",
		want: map[string]string{"tokentailor.decision": "allow", "tokentailor.route": "orders", "tokentailor.issuer": h.is.URL(),
			"tokentailor.cache.introspection": "miss", "tokentailor.cache.mint": "miss"},
		wantClient: 1,
	}, {
		name:    "exchange: the call to the token endpoint is a child span",
		path:    "/exchange",
		headers: map[string]string{"traceparent": "00-33333333333333333333333333333333-4444444444444444-01"},
		trace:   "33333333333333333333333333333333", parent: "4444444444444444",
		want: map[string]string{"tokentailor.decision": "allow", "tokentailor.route": "exchange", "tokentailor.mode": "exchange",
			"tokentailor.cache.exchange": "miss"},
		wantClient: 1,
	}}
	jwtTok := h.token(jwt.MapClaims{"scope": "orders:read billing"})
	narrow := h.token(jwt.MapClaims{"scope": "profile"})
	intro.Register("opaque-abc", map[string]any{"active": true, "sub": "bob", "scope": "orders:read", "client_id": "web", "aud": "api.example.com", "exp": float64(4102444800)})
	creds := map[string]string{"/orders/1": jwtTok, "/orders/2": jwtTok, "/orders/3": narrow, "/orders/4": "opaque-abc", "/exchange": jwtTok}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := bearer(creds[tt.path])
			for k, v := range tt.headers {
				hdr[k] = v
			}
			h.check("GET", tt.path, hdr)
			check, children := traceOf(t, exp, tt.trace)
			if check.SpanKind != trace.SpanKindServer || check.Parent.SpanID().String() != tt.parent || !check.Parent.IsRemote() {
				t.Errorf("Check span: kind %v, parent %s (remote %v); want server, child of %s", check.SpanKind, check.Parent.SpanID(), check.Parent.IsRemote(), tt.parent)
			}
			got := attrs(check.Attributes)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s is set: %v", k, got)
				}
			}
			var clients int
			for _, c := range children {
				if c.Parent.SpanID() != check.SpanContext.SpanID() || c.SpanKind != trace.SpanKindClient {
					t.Errorf("span %q (kind %v) in the trace is not a client child of the Check span", c.Name, c.SpanKind)
				}
				clients++
			}
			if clients != tt.wantClient {
				t.Errorf("%d client spans under the Check span, want %d", clients, tt.wantClient)
			}
		})
	}
	// The issuer's own trace continues from the client span.
	hs := intro.Headers()
	if len(hs) == 0 || !strings.Contains(hs[len(hs)-1].Get("traceparent"), "11111111111111111111111111111111") {
		t.Errorf("the introspection call carried no traceparent of the Check's trace: %v", hs)
	}
	assertNoSecretsInSpans(t, exp.GetSpans(), jwtTok, narrow, "opaque-abc", "s3cret", "alice", "acme", "alice@example.com", "bob")
}

// assertNoSecretsInSpans fails when any span's name, attributes, events or
// resource holds one of secrets: tokens, client secrets, claim values.
func assertNoSecretsInSpans(t *testing.T, spans tracetest.SpanStubs, secrets ...string) {
	t.Helper()
	if len(spans) == 0 {
		t.Fatal("no spans to look at")
	}
	for _, s := range spans {
		texts := []string{s.Name, s.Status.Description}
		for _, a := range s.Attributes {
			texts = append(texts, string(a.Key), a.Value.Emit())
		}
		for _, e := range s.Events {
			texts = append(texts, e.Name)
			for _, a := range e.Attributes {
				texts = append(texts, string(a.Key), a.Value.Emit())
			}
		}
		for _, a := range s.Resource.Attributes() {
			texts = append(texts, a.Value.Emit())
		}
		for _, secret := range secrets {
			if slices.ContainsFunc(texts, func(x string) bool { return strings.Contains(x, secret) }) {
				t.Errorf("span %q holds %q: %v", s.Name, secret, texts)
			}
		}
	}
}

// TestUnsampledParentIsNotTraced: a request whose trace context says "not
// sampled" produces no span, and the Check is decided as usual.
func TestUnsampledParentIsNotTraced(t *testing.T) {
	h, exp, _, _ := tracedHarness(t)
	exp.Reset()
	hdr := bearer(h.token(nil))
	hdr["traceparent"] = "00-55555555555555555555555555555555-6666666666666666-00"
	if st := httpStatus(h.check("GET", "/orders/1", hdr)); st != 200 {
		t.Fatalf("status %d", st)
	}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() == "55555555555555555555555555555555" {
			t.Fatalf("span %q exported for an unsampled trace", s.Name)
		}
	}
}

// TestTracingOffBuildsNoTracer: without tracing.enabled nothing traces and
// the transport toward issuers is the one given.
func TestTracingOffBuildsNoTracer(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	h := startHarnessWith(t, baseConfig, nil, nil, func(o *Options) { o.SpanExporter = exp })
	h.waitReady()
	h.check("GET", "/orders/1", map[string]string{"authorization": "Bearer " + h.token(nil), "traceparent": "00-" + w3cTrace + "-" + w3cParent + "-01"})
	if h.srv.tracer != nil || h.srv.authz.tracer != nil {
		t.Fatal("a tracer was built with tracing off")
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans exported with tracing off", n)
	}
}

// TestHTTPListenerChecksAreTracedToo: a forward_auth request's trace
// context (here B3 multi header, as nginx or Caddy pass on) parents its
// Check span as Envoy's does over gRPC.
func TestHTTPListenerChecksAreTracedToo(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	h := startHarnessWith(t, httpConfig+"tracing: {enabled: true}\n", nil, nil, func(o *Options) { o.SpanExporter = exp })
	h.waitReady()
	r := h.forwardAuth("GET", "/orders/1", map[string]string{"authorization": "Bearer " + h.token(nil),
		"x-b3-traceid": b3mTrace, "x-b3-spanid": b3mParent, "x-b3-sampled": "1"})
	if r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	check, _ := traceOf(t, exp, b3mTrace)
	if got := attrs(check.Attributes); check.Parent.SpanID().String() != b3mParent || got["tokentailor.decision"] != "allow" || got["tokentailor.route"] != "orders" {
		t.Fatalf("Check span: parent %s, attributes %v", check.Parent.SpanID(), got)
	}
}

// TestUnreachableCollectorCostsNoCheck: with nothing listening at the
// endpoint, Checks are answered as ever and the failed exports are logged.
func TestUnreachableCollectorCostsNoCheck(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
	h := newHarness(t, baseConfig+"tracing: {enabled: true, endpoint: 'http://127.0.0.1:1'}\n")
	for range 3 {
		start := time.Now()
		if st := httpStatus(h.check("GET", "/orders/1", bearer(h.token(nil)))); st != 200 {
			t.Fatalf("status %d", st)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("a Check took %v with the collector down", d)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.logs.String(), "tracing: spans not exported"); {
		if time.Now().After(deadline) {
			t.Fatalf("no log line about the failed export:\n%s", h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
