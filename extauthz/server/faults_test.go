package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Issue 11: a CheckRequest over grpc-go's default 4 MiB (1 MiB as
// configured before) was a gRPC ResourceExhausted error, which Envoy hands to
// failure_mode_allow. Every size Envoy can send gets a CheckResponse.
func TestOversizedCheckRequestIsDeniedWithACheckResponse(t *testing.T) {
	h := newHarness(t, baseConfig)
	tok := h.token(nil)
	tests := []struct {
		name       string
		extra      int // bytes of one extra header
		wantStatus int
	}{
		{name: "Envoy's default header limit (60 KiB)", extra: 60 << 10, wantStatus: 200},
		{name: "just over max_request_bytes", extra: 1<<20 + 1, wantStatus: 431},
		{name: "beyond the old gRPC limit", extra: 8 << 20, wantStatus: 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.check("GET", "/orders/1", map[string]string{"authorization": "Bearer " + tok, "x-big": strings.Repeat("a", tt.extra)})
			if got := httpStatus(resp); got != tt.wantStatus {
				t.Fatalf("status %d, want %d: %v", got, tt.wantStatus, resp.GetStatus())
			}
		})
	}
}

// A gzip-compressed Check is refused unread, small or a "zip bomb" (16 MiB of
// one byte, about 16 KiB on the wire, which gRPC would otherwise unpack in
// full before the size bound could answer 431); the same request sent
// plainly on the same connection is judged as usual.
func TestCompressedChecksAreRefused(t *testing.T) {
	h := newHarness(t, baseConfig)
	tok := h.token(nil)
	tests := []struct {
		name    string
		headers map[string]string
		plain   int // the status when sent uncompressed
	}{
		{name: "an ordinary request", headers: bearer(tok), plain: 200},
		{name: "a zip bomb", headers: map[string]string{"authorization": "Bearer " + tok, "x-big": strings.Repeat("a", 16<<20)}, plain: 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := h.client.Check(ctx, checkRequest("GET", "/orders/1", tt.headers), grpc.UseCompressor(gzip.Name))
			if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), errCompressed.Error()) {
				t.Fatalf("compressed Check: %v, %v; want Internal: %v", resp.GetStatus(), err, errCompressed)
			}
			if got := httpStatus(h.check("GET", "/orders/1", tt.headers)); got != tt.plain {
				t.Fatalf("the same Check uncompressed: %d, want %d", got, tt.plain)
			}
		})
	}
}

func TestMaxRequestBytesIsConfigurable(t *testing.T) {
	h := newHarness(t, strings.Replace(baseConfig, "  shutdown_grace: 5s", "  shutdown_grace: 5s\n  max_request_bytes: 8192", 1))
	tok := h.token(nil)
	if got := httpStatus(h.check("GET", "/orders/1", map[string]string{"authorization": "Bearer " + tok})); got != 200 {
		t.Fatalf("small request: %d, want 200", got)
	}
	if got := httpStatus(h.check("GET", "/orders/1", map[string]string{"authorization": "Bearer " + tok, "x-big": strings.Repeat("a", 8192)})); got != 431 {
		t.Fatalf("request over 8192 bytes: %d, want 431", got)
	}
}

// Over gRPC, max_request_bytes bounds the request's bytes as received
// (checkService): exactly the bound is let through, one byte more is not.
func TestMaxRequestBytesBoundaryOverGRPC(t *testing.T) {
	const max = 8192
	h := newHarness(t, strings.Replace(baseConfig, "  shutdown_grace: 5s", "  shutdown_grace: 5s\n  max_request_bytes: 8192", 1))
	tok := h.token(nil)
	headers := func(pad int) map[string]string {
		return map[string]string{"authorization": "Bearer " + tok, "x-pad": strings.Repeat("a", pad)}
	}
	pad := 0
	for proto.Size(checkRequest("GET", "/orders/1", headers(pad))) < max {
		pad++
	}
	if got := proto.Size(checkRequest("GET", "/orders/1", headers(pad))); got != max {
		t.Fatalf("no padding makes the request exactly %d bytes (%d)", max, got)
	}
	if got := httpStatus(h.check("GET", "/orders/1", headers(pad))); got != 200 {
		t.Fatalf("request of exactly %d bytes: %d, want 200", max, got)
	}
	if got := httpStatus(h.check("GET", "/orders/1", headers(pad+1))); got != 431 {
		t.Fatalf("request of %d bytes: %d, want 431", max+1, got)
	}
}

// Issue 11: SIGTERM closed the listener at once, so new Checks got
// Unavailable. Now: not ready and NOT_SERVING at once, new Checks answered
// for listen.drain, then the listener closes.
func TestDrainAnswersNewChecksWhileReportingNotServing(t *testing.T) {
	const drain = 1500 * time.Millisecond
	h := newHarness(t, strings.Replace(baseConfig, "  shutdown_grace: 5s", "  shutdown_grace: 5s\n  drain: 1500ms", 1))
	tok := h.token(jwt.MapClaims{})
	addr := h.srv.GRPCAddr().String()
	readyz := "http://" + h.srv.AdminAddr().String() + "/readyz"
	health := func(conn *grpc.ClientConn) healthpb.HealthCheckResponse_ServingStatus {
		hc, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
		if err != nil {
			return -1
		}
		return hc.GetStatus()
	}
	// A fresh connection per Check: Envoy opens new ones during a drain too.
	freshCheck := func() (int, error) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, checkRequest("GET", "/orders/1", bearer(tok)))
		if err != nil {
			return 0, err
		}
		return httpStatus(resp), nil
	}
	for deadline := time.Now().Add(3 * time.Second); health(h.conn) != healthpb.HealthCheckResponse_SERVING; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("gRPC health never SERVING before SIGTERM")
		}
	}

	start := time.Now()
	h.cancel() // SIGTERM
	var notServingAfter time.Duration
	for {
		if health(h.conn) == healthpb.HealthCheckResponse_NOT_SERVING {
			notServingAfter = time.Since(start)
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("gRPC health still SERVING 1s after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
	res, err := http.Get(readyz)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz during drain = %d, want 503", res.StatusCode)
	}

	var answered, failed atomic.Int64
	var lastAnswer time.Duration
	for time.Since(start) < drain-200*time.Millisecond {
		st, err := freshCheck()
		if err != nil || st != 200 {
			failed.Add(1)
			t.Errorf("Check %v into the drain: %d, %v", time.Since(start).Round(time.Millisecond), st, err)
			continue
		}
		if st := httpStatus(h.check("GET", "/orders/1", bearer(tok))); st != 200 {
			t.Errorf("Check on the open connection during drain: %d", st)
		}
		answered.Add(1)
		lastAnswer = time.Since(start)
	}
	<-h.done
	stopped := time.Since(start)
	if stopped < drain {
		t.Errorf("stopped %v after SIGTERM, before the drain of %v ended", stopped, drain)
	}
	if _, err := freshCheck(); err == nil {
		t.Error("a Check was answered after the server stopped")
	}
	t.Logf("drain %v: NOT_SERVING %v after SIGTERM; %d new Checks answered (0 failed), the last %v after SIGTERM; stopped after %v",
		drain, notServingAfter.Round(time.Millisecond), answered.Load(), lastAnswer.Round(time.Millisecond), stopped.Round(time.Millisecond))
	if answered.Load() == 0 || failed.Load() != 0 {
		t.Fatalf("answered %d, failed %d", answered.Load(), failed.Load())
	}
}

// Issue 11: a reload whose new issuer's keys could not be fetched was
// swapped in after ReadyTimeout anyway, so a ready server turned into one
// answering 503. The serving pipeline stays until the new one is ready.
func TestReloadNeverReplacesAReadyPipelineWithAnUnreadyOne(t *testing.T) {
	h := newHarness(t, baseConfig)
	tok := h.token(nil)
	var up atomic.Bool
	second := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		res, err := http.Get(h.is.URL() + "/jwks.json")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.Copy(w, res.Body)
	}))
	t.Cleanup(second.Close)
	old := h.srv.Authz().Pipeline()
	cfg := strings.Replace(strings.ReplaceAll(baseConfig, "{{ISSUER}}", h.is.URL()), "routes:", `  - issuer: https://second.test
    jwks_url: `+second.URL+`/jwks.json
    audiences: [api.example.com]
    jwks_min_refetch: 200ms
routes:`, 1)
	h.write("config.yaml", cfg)
	start := time.Now()
	if err := h.srv.Reload(context.Background(), true); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if h.srv.Authz().Pipeline() != old {
		t.Fatal("a pipeline whose issuer keys were never fetched replaced the ready one")
	}
	if st := httpStatus(h.check("GET", "/orders/1", bearer(tok))); st != 200 {
		t.Fatalf("a valid token answered %d while the new config waits for keys", st)
	}
	res, err := http.Get("http://" + h.srv.AdminAddr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("/readyz = %d while the previous config serves", res.StatusCode)
	}
	up.Store(true)
	for h.srv.Authz().Pipeline() == old {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the new pipeline was never swapped in once its keys came")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := len(h.srv.Authz().Pipeline().Config.Issuers); got != 2 {
		t.Fatalf("serving a config with %d issuers, want the new one's 2", got)
	}
	if st := httpStatus(h.check("GET", "/orders/1", bearer(tok))); st != 200 {
		t.Fatalf("after the swap a valid token answered %d", st)
	}
}

// Issue 11: a config written in place was applied half-written. A reload
// reads the files twice a settle interval apart and applies them only when
// both reads agree.
func TestReloadWaitsForTheFileToStopChanging(t *testing.T) {
	h := newHarness(t, baseConfig)
	full := strings.NewReplacer("{{ISSUER}}", h.is.URL(), "ttl: 2m", "ttl: 1m", "\nlisten:\n", "\nlisten:\n  drain: 0s\n").Replace(baseConfig)
	path := filepath.Join(h.dir, "config.yaml")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A writer that is slower than the settle interval: one line every 20ms.
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for _, line := range strings.SplitAfter(full, "\n") {
			_, _ = f.WriteString(line)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := h.srv.Reload(context.Background(), true); !errors.Is(err, ErrConfigChanging) {
		t.Fatalf("Reload while the file is being written: %v, want ErrConfigChanging", err)
	}
	<-writerDone
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.Authz().Pipeline().Config.Routes[0].Upstream.TTL.Duration != time.Minute {
		if time.Now().After(deadline) {
			t.Fatal("the finished file was never applied")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("applied %v after the writer finished", time.Until(deadline.Add(-10*time.Second)).Abs().Round(time.Millisecond))
}
