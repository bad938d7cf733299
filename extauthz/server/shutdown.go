package server

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// drain tells everyone who asks that this process is going away — /readyz
// answers 503, gRPC health NOT_SERVING — and keeps answering Checks for
// listen.drain, so that Envoy's health checks and Kubernetes' endpoint
// removal move traffic away before the listener closes. Closing at once
// would turn the Checks still on their way into Unavailable errors, which
// Envoy answers by status_on_error (or lets through, with failure_mode_allow).
func (s *Server) drain() {
	d := s.authz.Pipeline().Config.Listen.Drain.Duration
	s.draining.Store(true)
	s.health.Shutdown()
	s.log.Info("draining: not ready, still answering checks", "drain", d)
	time.Sleep(d)
}

func (s *Server) stop() {
	s.draining.Store(true)
	s.health.Shutdown()
	grace := s.authz.Pipeline().Config.Listen.ShutdownGrace.Duration
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	// The HTTP authorization listeners drain within the same grace.
	hctx, hcancel := context.WithTimeout(context.Background(), grace)
	var hwg sync.WaitGroup
	for _, hs := range []*http.Server{s.httpTCP, s.httpSock} {
		if hs != nil {
			hwg.Go(func() {
				if hs.Shutdown(hctx) != nil {
					_ = hs.Close()
				}
			})
		}
	}
	select {
	case <-done:
	case <-time.After(grace):
		s.log.Warn("shutdown grace exceeded; closing remaining streams")
		s.grpc.Stop()
	}
	hwg.Wait()
	hcancel()
	s.flushTraces(grace)
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.admin.Shutdown(ctx)
		cancel()
	}
	for _, ln := range []net.Listener{s.socketLn, s.httpSocketLn} {
		if ln != nil {
			_ = os.Remove(ln.Addr().String())
		}
	}
	s.keySets.Close()
	s.shared.Close()
	s.log.Info("stopped")
}
