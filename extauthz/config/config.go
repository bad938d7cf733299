// Package config turns tokentailor's YAML file into a typed, defaulted and
// validated Config. Nothing here runs per request: the policy engine compiles
// routes once from the Config, and every stage gets its settings from it.
//
// Loading is strict: an unknown field, a wrong type or an invalid value fails
// with an error that names the field and its line and suggests the fix, e.g.
//
//	line 7: issuers[0]: unknown field "audience" (did you mean "audiences"?)
//	line 31: routes[2].upstream.ttl: invalid duration "5 minutes" (e.g. 5m)
//	line 31: routes[2].upstream.ttl: must be positive
//
// Every default lives here (defaults.go); the components take the values
// config gives them and have none of their own.
//
// Secrets (HMAC secrets, client secrets, private keys) are never written in the
// YAML itself: the file names a file or an environment variable to read them
// from. Relative paths are resolved against the config file's directory.
package config

import "strings"

// Config is the whole of tokentailor's configuration.
type Config struct {
	// Listen says where tokentailor serves.
	Listen Listen `json:"listen"`
	// Log sets the log level and format.
	Log Log `json:"log"`
	// Mint configures tokentailor as an issuer of internal tokens.
	Mint Mint `json:"mint"`
	// Credential says where the client's token is found.
	Credential Credential `json:"credential"`
	// Issuers lists the trusted authorization servers; a JWT's iss picks one.
	Issuers []Issuer `json:"issuers"`
	// Cache bounds the caches.
	Cache Cache `json:"cache"`
	// Runtime tunes the Go garbage collector (read at start only).
	Runtime Runtime `json:"runtime"`
	// SharedCache, when set, shares caches and revocations between replicas
	// through Redis or Valkey; nil means each replica caches alone.
	SharedCache *SharedCache `json:"shared_cache"`
	// RouteKey is the context_extensions key that names a route (default "route").
	RouteKey string `json:"route_key"`
	// TxnToken configures the Transaction Tokens of routes with upstream
	// mode txn_token.
	TxnToken TxnToken `json:"txn_token"`
	// TxnTokenService, when set, is an external Txn-Token Service asked
	// instead of minting Txn-Tokens; nil means tokentailor mints them.
	TxnTokenService *TxnTokenService `json:"txn_token_service"`
	// DPoP configures the checking of DPoP proofs (RFC 9449) for routes whose
	// sender_constraint is optional or required.
	DPoP DPoP `json:"dpop"`
	// Tracing exports OpenTelemetry spans of Checks (tracing.go); off by default.
	Tracing Tracing `json:"tracing"`
	// Routes are tried in order when the request names no route; first match wins.
	Routes []Route `json:"routes"`
	// DefaultRoute names the route used when none matches; empty means deny.
	DefaultRoute string `json:"default_route"`

	// dir is the directory of the file the config came from.
	dir string
	// warnings are found by Parse; see Warnings.
	warnings []string
}

// Listen holds the listener addresses.
type Listen struct {
	// GRPC is a TCP address for the ext_authz gRPC server, e.g. "127.0.0.1:9191".
	GRPC string `json:"grpc"`
	// Socket is a unix socket path for the ext_authz gRPC server.
	Socket string `json:"socket"`
	// Admin is the HTTP address for JWKS, health, readiness and metrics.
	Admin string `json:"admin"`
	// Drain is how long new checks are still served after SIGTERM while
	// /readyz and gRPC health already say not serving (default 5s), so that
	// Envoy and Kubernetes stop sending before the listener closes.
	Drain Duration `json:"drain"`
	// ShutdownGrace bounds how long in-flight checks may finish once the
	// drain is over and the listener closed (default 10s).
	ShutdownGrace Duration `json:"shutdown_grace"`
	// MaxRequestBytes bounds the size of a CheckRequest that is judged (the
	// bytes received or its protobuf size, whichever is larger); a larger
	// one is denied with 431 (default 1048576). gRPC itself
	// accepts up to MaxGRPCMessageBytes so that the denial is an answer,
	// never a gRPC error.
	MaxRequestBytes int `json:"max_request_bytes"`
	// Pprof serves Go's profiler under /debug/pprof/ on the admin listener.
	// Off by default; keep the admin listener on loopback when it is on.
	Pprof bool `json:"pprof"`
	// HTTP is a TCP address for the HTTP authorization listener (Envoy's
	// http_service, nginx auth_request, Caddy/Traefik forward_auth), e.g.
	// "127.0.0.1:9192". Empty (the default) disables it.
	HTTP string `json:"http"`
	// HTTPSocket is a unix socket path for the HTTP authorization listener;
	// every peer on it is trusted (the file's permissions are the boundary).
	HTTPSocket string `json:"http_socket"`
	// HTTPTrustedProxies are the CIDRs (or single addresses) of the proxies
	// whose requests the HTTP listener on HTTP answers; any other peer gets
	// 403. Default: loopback only (127.0.0.0/8, ::1/128).
	HTTPTrustedProxies []string `json:"http_trusted_proxies"`
}

// Log holds logging settings.
type Log struct {
	// Level is debug, info, warn or error (default info).
	Level string `json:"level"`
	// Format is json or text (default json).
	Format string `json:"format"`
}

// Mint configures the internal tokens tokentailor signs.
type Mint struct {
	// Issuer is the iss of minted tokens, e.g. "https://tokentailor.internal".
	Issuer string `json:"issuer"`
	// Keys are the signing keys; all are published in the JWKS.
	Keys []SigningKey `json:"keys"`
	// SigningKey is the kid of the key that signs (default: the first key).
	SigningKey string `json:"signing_key"`
	// Realm is the realm of WWW-Authenticate challenges (default "tokentailor").
	Realm string `json:"realm"`
}

// SigningKey is one PEM private key file.
type SigningKey struct {
	// File is the PEM file: Ed25519 (EdDSA), P-256 (ES256) or RSA ≥ 2048 (RS256).
	File string `json:"file"`
	// Kid is the key ID; empty means the RFC 7638 thumbprint.
	Kid string `json:"kid"`
}

// Credential says where the client's token is found.
type Credential struct {
	// Header is the request header holding the token (default "authorization").
	Header string `json:"header"`
	// Scheme is the auth scheme before the token (default "Bearer" for the
	// authorization header, none for other headers).
	Scheme *string `json:"scheme"`
	// MaxBytes bounds the credential header, and so the token that JWT
	// verification and introspection see (default 8192).
	MaxBytes int `json:"max_bytes"`
}

// Cache bounds tokentailor's caches.
type Cache struct {
	// MaxEntries bounds each cache (validation, minted tokens, introspection,
	// exchange) in entries (default 10000). A cached token costs about 2.4 KiB
	// of heap across the validation and minted-token caches (more for larger
	// tokens), so the default holds ~23 MiB; raise it for a gateway that
	// sees more distinct tokens within their lifetime.
	MaxEntries int `json:"max_entries"`
}

// Runtime tunes Go's garbage collector for a sidecar that answers many small
// requests from a small heap. The GOGC and GOMEMLIMIT environment variables,
// when set, win over these settings (the Kubernetes injector sets GOMEMLIMIT
// from the container's memory limit). Read at start only.
type Runtime struct {
	// GCPercent is the GC target, as GOGC (default 400): the heap may grow by
	// this percentage of the live heap before the next collection. With the
	// few MiB of live heap a sidecar has once warm, Go's 100 collects every
	// few thousand requests; 400 collects a quarter as often, and MemoryLimit
	// keeps a heap full of cached tokens from growing as far.
	GCPercent int `json:"gc_percent"`
	// MemoryLimit is the soft limit of the memory the Go runtime manages, as
	// GOMEMLIMIT: a Kubernetes quantity ("96Mi", "128M", "134217728"), "off",
	// or "auto" (default): 32 MiB plus 2.5 KiB per cache.max_entries, which is
	// what full validation and minted-token caches of typical tokens hold
	// plus room to work. It is soft: near it the GC runs more often; nothing
	// fails. It does not count the binary's own pages (≈ 25 MiB resident).
	MemoryLimit string `json:"memory_limit"`
}

// DPoP configures DPoP proof checking (RFC 9449).
type DPoP struct {
	// Algorithms is the proof alg allowlist, asymmetric only (default: ES256,
	// ES384, ES512, EdDSA, RS256, RS384, RS512, PS256, PS384, PS512). It is
	// also the algs parameter of DPoP challenges.
	Algorithms []string `json:"algorithms"`
	// MaxAge bounds how old a proof's iat may be (default 60s).
	MaxAge Duration `json:"max_age"`
	// Leeway bounds how far in the future iat may be (default 5s).
	Leeway Duration `json:"leeway"`
	// ReplayEntries bounds the cache of seen proofs (default 100000); when it
	// is full of live proofs, new proofs are refused (503) rather than a
	// seen one forgotten.
	ReplayEntries int `json:"replay_entries"`
	// NonceSecret, when set, makes server nonces mandatory: proofs must carry
	// a nonce tokentailor issued (DPoP-Nonce header of a use_dpop_nonce
	// denial). At least 32 bytes; replicas sharing it accept each other's nonces.
	NonceSecret *Secret `json:"nonce_secret"`
	// NonceLifetime is how long an issued nonce is accepted (default 5m).
	NonceLifetime Duration `json:"nonce_lifetime"`
	// SharedReplayDown says what happens to a proof when shared_cache is
	// configured and Redis cannot record it: "refuse" (default: 503, the
	// proof could have been seen by another replica) or "local" (this
	// replica's replay cache alone decides).
	SharedReplayDown string `json:"shared_replay_down"`
}

// Dir is the directory of the loaded file; relative paths resolve against it.
func (c *Config) Dir() string { return c.dir }

// IsAuthorizationHeader reports whether h names the authorization header.
func IsAuthorizationHeader(h string) bool { return strings.EqualFold(h, "authorization") }
