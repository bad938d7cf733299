package inject

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// ShutdownGrace bounds how long reviews in flight may finish on shutdown; the
// webhook Deployment's terminationGracePeriodSeconds covers it and its preStop.
const ShutdownGrace = 10 * time.Second

// Run serves the webhook over TLS on opts.Addr until ctx is done, then shuts
// down gracefully. See Serve.
func Run(ctx context.Context, opts Options, logger *slog.Logger) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("inject webhook: %w", err)
	}
	return Serve(ctx, ln, o, logger)
}

// Serve serves the webhook over TLS on ln until ctx is done (it closes ln).
// The certificate and key are read from opts.CertFile and opts.KeyFile before
// serving (an unreadable or mismatched pair fails at once) and re-read at most
// every opts.CertCheckInterval during handshakes: a renewed certificate
// (rotated Secret, cert-manager) is served without a restart, and a broken
// renewal keeps the last good pair and logs an error.
func Serve(ctx context.Context, ln net.Listener, opts Options, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h, err := NewHandler(opts, logger)
	if err != nil {
		_ = ln.Close()
		return err
	}
	o := h.injector.opts
	if o.CertFile == "" || o.KeyFile == "" {
		_ = ln.Close()
		return fmt.Errorf("%w: CertFile and KeyFile are required", ErrInvalidOptions)
	}
	certs := &certReloader{certFile: o.CertFile, keyFile: o.KeyFile, interval: o.CertCheckInterval, now: o.Now, logger: logger}
	if err := certs.reload(); err != nil {
		_ = ln.Close()
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	srv := &http.Server{
		Handler: h,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: certs.GetCertificate,
		},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	logger.Info("inject webhook serving", "addr", ln.Addr().String(), "namespace", o.Namespace)
	select {
	case err := <-done:
		return fmt.Errorf("inject webhook: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("inject webhook shutdown: %w", err)
	}
	return nil
}

// certReloader serves a certificate read from files and re-reads them at most
// every interval, keeping the last good pair when a new one is unusable.
type certReloader struct {
	certFile, keyFile string
	interval          time.Duration
	now               func() time.Time
	logger            *slog.Logger

	mu          sync.Mutex
	cert        *tls.Certificate
	certPEM     []byte
	keyPEM      []byte
	lastChecked time.Time
}

// GetCertificate is tls.Config.GetCertificate.
func (c *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	due := c.now().Sub(c.lastChecked) >= c.interval
	c.mu.Unlock()
	if due {
		if err := c.reload(); err != nil {
			c.logger.Error("webhook certificate not reloaded; serving the previous one", "err", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, nil
}

// reload reads both files and swaps the certificate when they changed.
func (c *certReloader) reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastChecked = c.now()
	certPEM, err := os.ReadFile(c.certFile)
	if err != nil {
		return fmt.Errorf("reading certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(c.keyFile)
	if err != nil {
		return fmt.Errorf("reading key: %w", err)
	}
	if c.cert != nil && bytes.Equal(certPEM, c.certPEM) && bytes.Equal(keyPEM, c.keyPEM) {
		return nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	if c.cert != nil {
		c.logger.Info("webhook certificate reloaded", "cert", c.certFile)
	}
	c.cert, c.certPEM, c.keyPEM = &pair, certPEM, keyPEM
	return nil
}
