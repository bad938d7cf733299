// Package server runs tokentailor: the Envoy ext_authz gRPC service, the
// gRPC health service, the HTTP admin listener (JWKS, health, readiness,
// metrics), live reload and graceful shutdown, and the Go runtime's tuning.
//
// Check turns the CheckRequest into an extauthz.Request and hands it to the
// current pipeline.Pipeline (extauthz/pipeline), which decides; the pipeline
// is built from one config and swapped atomically on reload, so a Check never
// sees half of a new config.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/logsample"
	"github.com/tokentailor/tokentailor/extauthz/metrics"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
	"github.com/tokentailor/tokentailor/extauthz/request"
	"github.com/tokentailor/tokentailor/extauthz/tracing"
)

// Authz implements envoy.service.auth.v3.Authorization on the current Pipeline.
type Authz struct {
	authv3.UnimplementedAuthorizationServer

	pipe    atomic.Pointer[pipeline.Pipeline]
	log     *slog.Logger
	metrics *metrics.Metrics
	denyLog *logsample.Sampler // thins deny lines per reason; metrics count them all
	tracer  *tracing.Tracer    // nil when tracing is off
}

var _ authv3.AuthorizationServer = (*Authz)(nil)

// DenyLinesPerSecond is how many deny lines per reason are logged each
// second; the rest are summed up in one "denials suppressed" line.
const DenyLinesPerSecond = 10

// NewAuthz returns an Authz serving p. log and m may be nil.
func NewAuthz(p *pipeline.Pipeline, log *slog.Logger, m *metrics.Metrics) *Authz {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Authz{log: log, metrics: m, denyLog: logsample.New(DenyLinesPerSecond, time.Second, time.Now)}
	a.pipe.Store(p)
	return a
}

// Pipeline returns the pipeline in use.
func (a *Authz) Pipeline() *pipeline.Pipeline { return a.pipe.Load() }

// Swap makes p the pipeline for every later Check and returns the old one.
// Checks already running finish on the old one.
func (a *Authz) Swap(p *pipeline.Pipeline) *pipeline.Pipeline { return a.pipe.Swap(p) }

// Check answers one Envoy ext_authz request. Every outcome of a well-formed
// request is a CheckResponse; a gRPC error is returned only for a request
// that carries no HTTP attributes at all, because Envoy treats gRPC errors
// by failure_mode_allow.
func (a *Authz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	resp, _, err := a.check(ctx, req, received{wireBytes: -1})
	return resp, err
}

// check is Check for a request with what the gRPC server learnt as it
// decoded it (checkService; Authz.Check knows nothing: wireBytes -1 sizes
// req instead). wire is the answer's encoding when one was kept with it
// (pipeline.Outcome.Wire).
func (a *Authz) check(ctx context.Context, req *authv3.CheckRequest, got received) (resp *authv3.CheckResponse, wire []byte, _ error) {
	start := time.Now()
	p := a.pipe.Load()
	if max := p.Config.Listen.MaxRequestBytes; got.undecoded || max > 0 && tooLarge(req, got.wireBytes, max) {
		// Judged by size alone: headers this large are no request a route
		// was written for. An answer, never a gRPC error (invariant 5).
		out := pipeline.Outcome{Err: fmt.Errorf("%w: more than listen.max_request_bytes (%d)", extauthz.ErrRequestTooLarge, max)}
		out.Response, out.Denial = p.Response.Deny(out.Err)
		a.record(&out, time.Since(start))
		return out.Response, nil, nil
	}
	view := request.FromCheck
	if got.lowerKeys {
		view = request.FromCheckLowerKeys
	}
	r, err := view(req)
	if err != nil {
		a.metrics.Decision("error", "bad_request", "", time.Since(start))
		return nil, nil, status.Error(codes.InvalidArgument, err.Error())
	}
	out := a.decide(ctx, &r, start)
	return out.Response, out.Wire, nil
}

// decide runs r down the current pipeline and records the outcome: the one
// path shared by the gRPC and the HTTP front ends.
func (a *Authz) decide(ctx context.Context, r *extauthz.Request, start time.Time) pipeline.Outcome {
	p := a.pipe.Load()
	r.Time = p.RequestTime(start)
	if a.tracer != nil {
		return a.decideTraced(ctx, p, r, start)
	}
	out := p.Decide(ctx, r)
	a.record(&out, time.Since(start))
	return out
}

// record logs and counts out with the classification its denial was built
// from: a denial is classified once, in response.Builder.Deny.
func (a *Authz) record(out *pipeline.Outcome, took time.Duration) {
	if out.Err == nil {
		if out.Decisions != nil {
			out.Decisions.Allowed(took) // the same series as below, resolved at build
		} else {
			a.metrics.Decision("allow", "ok", out.Route, took)
		}
		if a.log.Enabled(context.Background(), slog.LevelDebug) {
			a.log.Debug("allow", "route", out.Route, "token", out.TokenHash, "sub", out.Subject, "mode", string(out.Mode), "took", took)
		}
		return
	}
	o := out.Denial
	a.metrics.Decision("deny", o.Reason, out.Route, took)
	level := slog.LevelInfo
	if o.Status >= 500 {
		level = slog.LevelWarn
	}
	ok, suppressed := a.denyLog.Admit(o.Reason)
	if suppressed > 0 {
		a.log.Log(context.Background(), level, "denials suppressed", "reason", o.Reason, "suppressed", suppressed)
	}
	if !ok {
		return
	}
	a.log.Log(context.Background(), level, "deny", "route", out.Route, "status", o.Status, "reason", o.Reason,
		"token", out.TokenHash, "error", out.Err.Error(), "took", took)
}

// tooLarge reports whether req, received in wireBytes bytes (-1: unknown),
// is over max: more bytes received than max, or a decoded request whose
// canonical size (proto.Size) is. The second is computed only when the
// received size is at least two thirds of max: an encoding can be smaller
// than the canonical one (map entries without their empty value field, at
// most ≈ 1.4 × here), so that no crafted encoding gets past a bound that
// in-process Checks (Authz.Check) apply.
func tooLarge(req *authv3.CheckRequest, wireBytes, max int) bool {
	switch {
	case wireBytes > max:
		return true
	case wireBytes < 0 || wireBytes >= max/3*2:
		return overMaxRequestBytes(req, max)
	}
	return false
}

// checkService is envoy.service.auth.v3.Authorization as generated
// (authv3.Authorization_ServiceDesc), except that its Check handler decodes
// into a checkCall, so that Check learns the request's size from the bytes
// gRPC received instead of sizing the decoded message again (≈ 0.25 µs of a
// warm Check: a walk of the header map). The server registers Authz with it.
var checkService = grpc.ServiceDesc{
	ServiceName: "envoy.service.auth.v3.Authorization",
	HandlerType: (*authv3.AuthorizationServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Check", Handler: handleCheck}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    "envoy/service/auth/v3/external_auth.proto",
}

// handleCheck decodes a Check call (fastCodec records its size) and runs it
// through interceptor when the server has one, as generated handlers do.
// Without one, an answer kept with its encoding goes back as an
// encodedAnswer, which fastCodec sends without encoding it again; an
// interceptor always sees the CheckResponse.
func handleCheck(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	a := srv.(*Authz)
	in := new(checkCall)
	// A request over the bound is answered from its size alone; the codec
	// does not decode it.
	in.limit = a.pipe.Load().Config.Listen.MaxRequestBytes
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		resp, wire, err := a.check(ctx, &in.req, in.received)
		if wire != nil {
			// In the call's own allocation: one object fewer per warm Check.
			in.answer = encodedAnswer{CheckResponse: resp, wire: wire}
			return &in.answer, err
		}
		return resp, err
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, &in.req, info, func(ctx context.Context, req any) (any, error) {
		if r := req.(*authv3.CheckRequest); r != &in.req {
			return a.Check(ctx, r) // an interceptor replaced the request: size it
		}
		resp, _, err := a.check(ctx, &in.req, in.received)
		return resp, err
	})
}
