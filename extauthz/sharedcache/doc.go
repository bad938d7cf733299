// Package sharedcache lets tokentailor replicas share introspection answers,
// exchanged tokens and replay marks through Redis (≥ 7) or Valkey, and spread
// revocations to every replica within a second. It is optional: a nil *Cache
// is a valid, disabled cache whose lookups miss and whose writes do nothing,
// so callers need no branch for "not configured".
//
// # Layers
//
// A caller (the introspector, the exchanger) keeps its own bounded local
// cache of decoded values, keyed by the SHA-256 of the token, and asks this
// package only on a local miss. Reads use RESP3 server-assisted client-side
// caching (CLIENT TRACKING, through github.com/redis/rueidis): a value read
// once is kept in the client and Redis tells the client when the key changes,
// so repeated reads of a hot key cost no round trip and never serve a value
// that Redis no longer holds. Writes go to Redis with PXAT: an entry never
// outlives the expiry its caller passes (the token's exp, capped by the
// caller's own cap) nor Options.MaxTTL.
//
// # What Redis sees
//
// Keys are Options.KeyPrefix, a kind letter and an HMAC-SHA-256, keyed with a
// deployment secret, of the issuer and the caller's token hash:
//
//	<prefix>i:{<base64url(HMAC(secret, "tokentailor/sharedcache/v1" ‖ issuer ‖ token-hash))>}
//
// so whoever reads Redis cannot test a guessed token without the secret. The
// braces are a Cluster hash tag: every kind of entry for one token lies in
// one slot, so a revocation writes its mark and drops the shared answer in
// one pipelined call to one master. Values are what the pipeline needs and nothing that identifies
// the token: EncodeIntrospection holds a principal's fields (or the refusal),
// EncodeToken an exchanged token and its expiry.
//
// # Redis slow or down
//
// Every call is bounded by Options.Timeout (50 ms by default) and goes
// through a circuit breaker (github.com/sony/gobreaker/v2): after
// Options.BreakerFailures consecutive failures the breaker opens and calls
// fail at once with ErrUnavailable, without touching the network, for
// Options.BreakerCooldown; then one probe is let through, and its success
// closes the breaker. A caller treats ErrUnavailable like a miss and decides
// on its own (local cache, then the issuer), so Redis never fails a Check
// the local path could decide. The client connects in the background: New
// never waits for Redis, and readiness does not depend on it. State changes
// are logged once each and exported as a gauge (the most open breaker).
//
// In a Redis Cluster each master has its own breaker: a master that dies or
// stalls opens the breaker of the keys it serves, and the other masters'
// keys are served on. The client reads the slot map every second, whatever
// its traffic (rueidis would otherwise re-read it only after a call failed
// on a node, and calls held back by an open breaker fail on none). When a
// replica takes a dead master's slots over, it comes with its own breaker,
// closed, which counts no failure in its first two seconds, while the
// client's routing catches up: every replica reads those keys again within
// about three seconds of the take-over, whatever the cooldown, in a cluster
// of fewer than 100 nodes (rueidis waits up to a second before it re-reads
// the map, longer in larger clusters, which can outlast the grace). A
// master that leaves the map and comes back soon gets its breaker back, so
// that a node answering with an out-of-date map closes no dead master's
// breaker. Each replica asks for CLUSTER SLOTS once a second, and rueidis's
// own refresh adds a few such reads. In sentinel mode the master the client
// follows (rueidis switches when the Sentinels announce a promotion) is read
// from the client every second, without a call to Redis, and a promoted
// master comes with its own breaker the same way.
//
// # Revocation
//
// Revoke marks a token hash inactive until a time (the token's exp): it
// writes a revocation mark, deletes the shared introspection answer, and
// publishes a notice on a pub/sub channel. The notice carries the issuer and
// token hash sealed with AES-256-GCM under a key derived from the secret, so
// Redis sees neither. Every replica (the sender included) opens it and calls
// the functions registered with OnRevoke, which drop their local entries.
// Tracking invalidation drops the client-side copies of the changed keys on
// every replica too. When the subscription is lost (Redis restarted, network
// cut), notices may have been missed: on resubscribing, OnRevoke functions are
// called with Revocation.All set, and callers drop every local entry that a
// revocation could concern.
//
// # Replay marks
//
// Replay records one-time values (DPoP proofs' jti, keyed by
// dpop.ReplayKey) with SET NX behind a local store: the first replica to
// record a proof wins and every other one sees it. Unlike a cache miss, a
// replay mark that cannot be written is not something a replica can decide
// alone, so by default Add fails with ErrUnavailable (the proof is refused,
// 503); Replay.FallBackLocal lets the local store decide instead.
package sharedcache
