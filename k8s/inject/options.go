package inject

import (
	"fmt"
	"time"

	"github.com/tokentailor/tokentailor/envoy"
)

// Defaults applied by Options.withDefaults.
const (
	// DefaultAddr is the webhook's TLS listen address.
	DefaultAddr = ":8443"
	// DefaultEnvoyImage is the Envoy image of injected sidecars.
	DefaultEnvoyImage = "envoyproxy/envoy:distroless-v1.36.4"
	// DefaultTokentailorImage is the tokentailor image of injected sidecars.
	DefaultTokentailorImage = "ghcr.io/tokentailor/tokentailor:latest"
	// DefaultConfigMap is the policy ConfigMap used when a pod names none.
	DefaultConfigMap = "tokentailor-config"
	// DefaultSigningKeySecret is the signing-key Secret used when a pod names none.
	DefaultSigningKeySecret = "tokentailor-signing-key"
	// DefaultCertCheckInterval is how often the certificate files are checked.
	DefaultCertCheckInterval = 10 * time.Second
)

// Options configure the webhook. The zero value of every field but CertFile
// and KeyFile (needed by Run only) has a default.
type Options struct {
	// Addr is the TLS listen address (default DefaultAddr).
	Addr string
	// CertFile and KeyFile are the PEM serving certificate (chain) and key,
	// re-read when they change (a Secret or cert-manager mount).
	CertFile, KeyFile string
	// CertCheckInterval is how often the files are checked for a change
	// (default DefaultCertCheckInterval).
	CertCheckInterval time.Duration
	// Namespace is the webhook's own namespace: pods there are never mutated.
	Namespace string
	// EnvoyImage and TokentailorImage are the sidecars' images.
	EnvoyImage, TokentailorImage string
	// DefaultConfigMap and DefaultSigningKeySecret are used when a pod's
	// annotations name none.
	DefaultConfigMap, DefaultSigningKeySecret string
	// EnvoyTemplate is the Envoy bootstrap to render (default
	// envoy.Sidecar(), i.e. envoy/sidecar.yaml).
	EnvoyTemplate []byte
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// withDefaults fills unset fields and checks that the Envoy template renders.
func (o Options) withDefaults() (Options, error) {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.CertCheckInterval <= 0 {
		o.CertCheckInterval = DefaultCertCheckInterval
	}
	if o.EnvoyImage == "" {
		o.EnvoyImage = DefaultEnvoyImage
	}
	if o.TokentailorImage == "" {
		o.TokentailorImage = DefaultTokentailorImage
	}
	if o.DefaultConfigMap == "" {
		o.DefaultConfigMap = DefaultConfigMap
	}
	if o.DefaultSigningKeySecret == "" {
		o.DefaultSigningKeySecret = DefaultSigningKeySecret
	}
	if len(o.EnvoyTemplate) == 0 {
		o.EnvoyTemplate = envoy.Sidecar()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if _, err := RenderEnvoy(o.EnvoyTemplate, envoy.AppPort); err != nil {
		return o, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return o, nil
}

// Injector decides and builds the patch for one pod. Safe for concurrent use.
type Injector struct {
	opts Options
}

// NewInjector returns an Injector with opts defaulted and checked.
func NewInjector(opts Options) (*Injector, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Injector{opts: o}, nil
}
