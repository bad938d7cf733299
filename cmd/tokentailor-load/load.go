package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// benchRoute is the route the generated CheckRequests name in their context
// extensions, as Envoy's per-route ext_authz settings would.
const benchRoute = "orders-read"

// checkRequest builds the CheckRequest Envoy would send for GET /orders/42
// carrying token (none when empty), with the dozen headers a browser or SDK
// request typically has, so that header handling costs what it costs.
//
// Besides the headers it carries what Envoy's HTTP ext_authz filter always
// fills in (check_request_utils.cc, createHttpCheck): both peers' socket
// addresses, the time the request started, the stream's id as a decimal
// string, the protocol, and the metadata_context and route_metadata_context
// messages, present even when empty. A request without them would be
// cheaper to decode than any Envoy sends, for the floor and tokentailor
// alike.
func checkRequest(token string, seq int) *authv3.CheckRequest {
	h := map[string]string{
		":authority": "orders.example.com", ":path": "/orders/42?view=full", ":method": "GET",
		":scheme": "https", "accept": "application/json", "accept-encoding": "gzip, br",
		"user-agent": "tokentailor-load/1", "x-forwarded-proto": "https",
		"x-request-id":   fmt.Sprintf("3f1b2c4d-9e8a-4c7b-a6d5-%012d", seq),
		"content-length": "0",
	}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      peer("10.244.1.17", 43512+uint32(seq%20000)),
		Destination: peer("10.244.2.23", 8080),
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(benchEpoch.Add(time.Duration(seq) * time.Millisecond)),
			Http: &authv3.AttributeContext_HttpRequest{
				// Envoy's stream ids are random 64-bit numbers.
				Id: strconv.FormatUint(0x9e3779b97f4a7c15*uint64(seq+1), 10), Method: "GET", Scheme: "https",
				Host: "orders.example.com", Path: "/orders/42?view=full", Protocol: "HTTP/1.1", Headers: h,
			},
		},
		ContextExtensions:    map[string]string{"route": benchRoute},
		MetadataContext:      &corev3.Metadata{},
		RouteMetadataContext: &corev3.Metadata{},
	}}
}

// benchEpoch is the start time of the generated requests (plus their
// sequence number in milliseconds): their size, not their value, matters.
var benchEpoch = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// peer is an AttributeContext.Peer at a TCP socket address, as Envoy sends
// for a plaintext listener (no principal, no certificate).
func peer(addr string, port uint32) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
	}}}
}

// source hands workers the requests to send. Warm requests are reused round
// robin; cold ones are used once each, first from a pre-built pool, then
// made by gen (signed on the fly) until limit.
type source struct {
	// warm requests are sent again and again.
	warm []*authv3.CheckRequest
	// cold requests are sent once each.
	cold []*authv3.CheckRequest
	// gen makes cold request number seq when the pool is used up; nil ends
	// the run instead.
	gen func(seq int64) (*authv3.CheckRequest, error)
	// coldEvery sends every coldEvery-th request cold when warm is not empty;
	// 0 sends only warm requests.
	coldEvery uint64
	// limit bounds the cold requests (0: no bound).
	limit int64
	// cycle, when set, sends the marshalled cold requests round and round
	// instead of each once: a pool several times the server's cache bound
	// keeps every request a miss (the bench checks it from the server's
	// cache metrics) for as long as a run lasts, without signing a token per
	// request. warm must be empty.
	cycle [][]byte

	next atomic.Int64
	// warmRaw holds warm, marshalled once (prepare).
	warmRaw []rawRequest
}

// prepare marshals the warm requests once, before a run.
func (s *source) prepare() error {
	if len(s.warmRaw) == len(s.warm) {
		return nil
	}
	s.warmRaw = make([]rawRequest, len(s.warm))
	for i, r := range s.warm {
		b, err := proto.Marshal(r)
		if err != nil {
			return fmt.Errorf("marshalling a warm request: %w", err)
		}
		s.warmRaw[i] = b
	}
	return nil
}

// NextRaw is Next, marshalled: warm requests as prepared, cold ones now
// (each is sent once, so its one marshalling is the call's own).
func (s *source) NextRaw(w int, n uint64) (rawRequest, error) {
	if len(s.warmRaw) > 0 && (s.coldEvery == 0 || n%s.coldEvery != 0) {
		return s.warmRaw[(n+uint64(w)*7919)%uint64(len(s.warmRaw))], nil
	}
	if len(s.cycle) > 0 {
		return s.cycle[(s.next.Add(1)-1)%int64(len(s.cycle))], nil
	}
	r, err := s.Next(w, n)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(r)
}

// errExhausted ends a run when its cold tokens are used up.
var errExhausted = errors.New("cold tokens used up")

// Next returns the request worker w sends as its n-th.
func (s *source) Next(w int, n uint64) (*authv3.CheckRequest, error) {
	if len(s.warm) > 0 && (s.coldEvery == 0 || n%s.coldEvery != 0) {
		return s.warm[(n+uint64(w)*7919)%uint64(len(s.warm))], nil
	}
	i := s.next.Add(1) - 1
	if s.limit > 0 && i >= s.limit {
		return nil, errExhausted
	}
	if i < int64(len(s.cold)) {
		r := s.cold[i]
		s.cold[i] = nil // let it be collected: it is never sent again
		return r, nil
	}
	if s.gen == nil {
		return nil, errExhausted
	}
	return s.gen(i)
}

// Used returns how many cold requests were handed out.
func (s *source) Used() int64 { return s.next.Load() }

// loadOptions configures one measured run.
type loadOptions struct {
	// Target is host:port or unix:///path.
	Target string
	// Conns is the number of gRPC connections (HTTP/2 transports).
	Conns int
	// Workers is the number of concurrent callers, spread over Conns.
	Workers int
	// Warmup runs before measuring; nothing of it is recorded.
	Warmup time.Duration
	// WarmupCold makes the warm-up go on until the source has handed out at
	// least this many cold requests (the server's caches full).
	WarmupCold int64
	// Duration is how long to measure (a run ends earlier when its cold
	// tokens are used up).
	Duration time.Duration
	// PID is the server process to charge CPU time to; 0 skips it.
	PID int
	// Timeout bounds each Check (default 5s).
	Timeout time.Duration
	// OnMeasure, when set, is called once the warm-up is over, just before
	// the measured phase starts.
	OnMeasure func()
}

// result is what one run measured.
type result struct {
	Requests, OK, Denied, Errors uint64
	// FirstError is the first failed call's error, or the first denial's status.
	FirstError string
	Elapsed    time.Duration
	Hist       Histogram
	// ServerCPU and GenCPU are CPU time spent during the measured phase.
	ServerCPU, GenCPU time.Duration
	// RSSBefore and RSSAfter are the server's resident memory.
	RSSBefore, RSSAfter int64
}

// RPS returns requests per second.
func (r *result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// CPUPerReq returns the server's CPU time per request.
func (r *result) CPUPerReq() time.Duration { return perReq(r.ServerCPU, r.Requests) }

// GenCPUPerReq returns the generator's CPU time per request.
func (r *result) GenCPUPerReq() time.Duration { return perReq(r.GenCPU, r.Requests) }

func perReq(d time.Duration, n uint64) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}

// dial opens one client connection to target.
func dial(target string) (*grpc.ClientConn, error) {
	addr := "passthrough:///" + target
	if path, ok := unixPath(target); ok {
		addr = "unix://" + path
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	cc.Connect()
	return cc, nil
}

// runLoad warms up, then measures, against o.Target.
func runLoad(ctx context.Context, o loadOptions, src *source) (*result, error) {
	if o.Conns < 1 || o.Workers < 1 {
		return nil, fmt.Errorf("conns and workers must be positive")
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if err := src.prepare(); err != nil {
		return nil, err
	}
	clients, closeAll, err := connect(o)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	if err := warmUp(ctx, o, clients, src); err != nil {
		return nil, err
	}
	if o.OnMeasure != nil {
		o.OnMeasure()
	}
	return phase(ctx, o, clients, src, o.Duration, true)
}

// warmUp loads the server for o.Warmup, then until src has handed out
// o.WarmupCold cold requests; nothing of it is measured.
func warmUp(ctx context.Context, o loadOptions, clients []*grpc.ClientConn, src *source) error {
	if o.Warmup > 0 {
		if _, err := phase(ctx, o, clients, src, o.Warmup, false); err != nil {
			return fmt.Errorf("warmup: %w", err)
		}
	}
	for src.Used() < o.WarmupCold {
		res, err := phase(ctx, o, clients, src, 250*time.Millisecond, false)
		if err != nil {
			return fmt.Errorf("warmup: %w", err)
		}
		if res.Requests == 0 {
			return errors.New("warmup: cold requests used up before the caches were full")
		}
	}
	return nil
}

// connect opens o.Conns connections to o.Target; closeAll closes them.
func connect(o loadOptions) (clients []*grpc.ClientConn, closeAll func(), err error) {
	closeAll = func() {
		for _, cc := range clients {
			cc.Close()
		}
	}
	for range o.Conns {
		cc, err := dial(o.Target)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		clients = append(clients, cc)
	}
	return clients, closeAll, nil
}

// add sums p, a later run against the same server, into r: counts, time,
// CPU and latencies; r keeps its first error and RSS before, and takes p's
// RSS after.
func (r *result) add(p *result) {
	r.addCounts(p)
	r.Elapsed += p.Elapsed
	r.ServerCPU += p.ServerCPU
	r.GenCPU += p.GenCPU
	if r.RSSBefore == 0 {
		r.RSSBefore = p.RSSBefore
	}
	r.RSSAfter = p.RSSAfter
	r.Hist.Merge(&p.Hist)
}

// addCounts sums p's request counts into r, which keeps its first error.
func (r *result) addCounts(p *result) {
	r.Requests += p.Requests
	r.OK += p.OK
	r.Denied += p.Denied
	r.Errors += p.Errors
	if r.FirstError == "" {
		r.FirstError = p.FirstError
	}
}

// phase runs the workers for d. When measure is false only failures matter.
func phase(ctx context.Context, o loadOptions, clients []*grpc.ClientConn, src *source, d time.Duration, measure bool) (*result, error) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	parts := make([]result, o.Workers)
	var before ProcSample
	if o.PID > 0 {
		var err error
		if before, err = readProc(o.PID); err != nil {
			return nil, fmt.Errorf("reading server CPU: %w", err)
		}
	}
	genBefore := selfCPU()
	start := time.Now()
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	for w := range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker(ctx, clients[w%len(clients)], src, w, o.Timeout, &stop, &parts[w])
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res := &result{Elapsed: elapsed, GenCPU: selfCPU() - genBefore, RSSBefore: before.RSS}
	if o.PID > 0 {
		after, err := readProc(o.PID)
		if err != nil {
			return nil, fmt.Errorf("reading server CPU: %w", err)
		}
		res.ServerCPU, res.RSSAfter = after.CPU-before.CPU, after.RSS
	}
	for i := range parts {
		p := &parts[i]
		res.addCounts(p)
		if measure {
			res.Hist.Merge(&p.Hist)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// worker sends requests until stop is set or the source is used up.
func worker(ctx context.Context, c *grpc.ClientConn, src *source, w int, timeout time.Duration, stop *atomic.Bool, out *result) {
	codec := grpc.ForceCodecV2(newRawCodec())
	resp := new(verdict)
	for n := uint64(0); !stop.Load() && ctx.Err() == nil; n++ {
		req, err := src.NextRaw(w, n)
		if err != nil {
			if !errors.Is(err, errExhausted) && out.FirstError == "" {
				out.FirstError = "making a request: " + err.Error()
			}
			stop.Store(true)
			return
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		t0 := time.Now()
		err = c.Invoke(cctx, checkMethod, req, resp, codec)
		took := time.Since(t0)
		cancel()
		out.Hist.Record(took)
		out.Requests++
		switch {
		case err != nil:
			out.Errors++
			if out.FirstError == "" {
				out.FirstError = err.Error()
			}
		case resp.code != 0:
			out.Denied++
			if out.FirstError == "" {
				out.FirstError = fmt.Sprintf("denied: code %d, HTTP %d", resp.code, resp.httpStatus)
			}
		default:
			out.OK++
		}
	}
}
