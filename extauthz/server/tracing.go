package server

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/cache"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/logsample"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
	"github.com/tokentailor/tokentailor/extauthz/tracing"
)

// CheckSpanName names the span of every Check, from either front end.
const CheckSpanName = "tokentailor.check"

// Attributes of the Check span. Each holds a label tokentailor chose or a
// configured name, never request data: no token, claim value or header
// value (the issuer is the configured issuer that validated the token).
const (
	AttrDecision = attribute.Key("tokentailor.decision") // allow | deny
	AttrRoute    = attribute.Key("tokentailor.route")    // the route's name; absent when none matched
	AttrReason   = attribute.Key("tokentailor.reason")   // "ok" or the deny reason, as the metric label
	AttrStatus   = attribute.Key("tokentailor.status")   // HTTP status of a denial
	AttrIssuer   = attribute.Key("tokentailor.issuer")   // the issuer that validated the credential
	AttrMode     = attribute.Key("tokentailor.mode")     // how the upstream token was made
	// AttrCachePrefix + a cache's name (jwt, introspection, mint,
	// exchange) is "hit" or "miss": whether the Check found its entry.
	AttrCachePrefix = "tokentailor.cache."
)

// decideTraced is decide inside a span: the Check's span joins the trace of
// the request Envoy authorizes (its traceparent or B3 headers), and calls
// to issuers made while deciding are its children.
func (a *Authz) decideTraced(ctx context.Context, p *pipeline.Pipeline, r *extauthz.Request, start time.Time) pipeline.Outcome {
	ctx, span := a.tracer.Start(ctx, CheckSpanName, r.Headers, start)
	if !span.IsRecording() {
		// Not sampled: the trace context still reaches the issuers.
		out := p.Decide(ctx, r)
		a.record(&out, time.Since(start))
		span.End()
		return out
	}
	var lookups cache.Lookups
	out := p.Decide(cache.WithLookups(ctx, &lookups), r)
	a.record(&out, time.Since(start))
	span.SetAttributes(outcomeAttributes(&out, lookups.All())...)
	if out.Err != nil && out.Denial.Status >= 500 {
		// tokentailor or the authorization server failed; a refusal of
		// the client's credential is an answer, not an error.
		span.SetStatus(codes.Error, out.Denial.Reason)
	}
	span.End()
	return out
}

// outcomeAttributes describes out for the Check span.
func outcomeAttributes(out *pipeline.Outcome, lookups []cache.Lookup) []attribute.KeyValue {
	kv := make([]attribute.KeyValue, 0, 6+len(lookups))
	if out.Err == nil {
		kv = append(kv, AttrDecision.String("allow"), AttrReason.String("ok"))
	} else {
		kv = append(kv, AttrDecision.String("deny"), AttrReason.String(out.Denial.Reason), AttrStatus.Int(out.Denial.Status))
	}
	if out.Route != "" {
		kv = append(kv, AttrRoute.String(out.Route))
	}
	if out.Principal != nil && out.Principal.Issuer != "" {
		kv = append(kv, AttrIssuer.String(out.Principal.Issuer))
	}
	if out.Mode != "" {
		kv = append(kv, AttrMode.String(string(out.Mode)))
	}
	for _, l := range lookups {
		v := "miss"
		if l.Hit {
			v = "hit"
		}
		kv = append(kv, attribute.String(AttrCachePrefix+l.Cache, v))
	}
	return kv
}

// startTracing builds the process's tracer from cfg's tracing block and the
// OTEL_* environment (nil when off). The OTel SDK reports export failures
// only to its process-wide error handler: they go to the server's log, one
// line a minute at most (a collector that is down fails every batch).
func (s *Server) startTracing(ctx context.Context, cfg *config.Config) (*tracing.Tracer, error) {
	t, err := tracing.New(ctx, cfg, tracing.Options{Exporter: s.opts.SpanExporter, Logger: s.log})
	if err != nil || t == nil {
		return nil, err
	}
	log, lines := s.log, logsample.New(1, time.Minute, time.Now)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		if ok, suppressed := lines.Admit("tracing"); ok {
			log.Warn("tracing: spans not exported", "error", err, "suppressed", suppressed)
		}
	}))
	return t, nil
}

// stopTracingIf stops the tracer when New failed after starting it.
func (s *Server) stopTracingIf(err error) {
	if err != nil {
		_ = s.tracer.Shutdown(context.Background())
	}
}

// flushTraces sends the spans still queued once the last Check ended, within
// grace (listen.shutdown_grace), and stops the exporter.
func (s *Server) flushTraces(grace time.Duration) {
	if s.tracer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.tracer.Shutdown(ctx); err != nil {
		s.log.Warn("tracing: spans still queued at shutdown were not all sent", "error", err)
	}
}
