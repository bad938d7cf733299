package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// Nonces issues and checks server nonces (RFC 9449 §9) without state: a
// nonce is base64url(issue time ‖ HMAC-SHA-256(key, issue time)[:16]). Any
// replica holding the same key accepts it while it is younger than Lifetime,
// so nonces need neither storage nor sharing, only the key. Keys rotate by
// listing the new key first: nonces are issued with Keys[0] and accepted
// under any.
type Nonces struct {
	keys     [][]byte
	lifetime time.Duration
	now      func() time.Time
}

// Nonce bounds.
const (
	// MinNonceKeyBytes is the shortest HMAC key accepted.
	MinNonceKeyBytes = 32
	nonceMACBytes    = 16
	nonceBytes       = 8 + nonceMACBytes
)

// NewNonces returns a nonce source. keys must hold at least one key of at
// least MinNonceKeyBytes; lifetime must be positive (DefaultNonceLifetime is
// a sensible value). now nil means time.Now.
func NewNonces(keys [][]byte, lifetime time.Duration, now func() time.Time) (*Nonces, error) {
	if len(keys) == 0 {
		return nil, errors.New("dpop: nonces need a key")
	}
	for _, k := range keys {
		if len(k) < MinNonceKeyBytes {
			return nil, errors.New("dpop: nonce key shorter than 32 bytes")
		}
	}
	if lifetime <= 0 {
		return nil, errors.New("dpop: nonce lifetime must be positive")
	}
	if now == nil {
		now = time.Now
	}
	return &Nonces{keys: keys, lifetime: lifetime, now: now}, nil
}

// Issue returns a fresh nonce for the DPoP-Nonce header.
func (n *Nonces) Issue() string {
	var b [nonceBytes]byte
	binary.BigEndian.PutUint64(b[:8], uint64(n.now().Unix()))
	copy(b[8:], n.mac(n.keys[0], b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Valid reports whether nonce was issued by a holder of one of the keys and
// is younger than the lifetime (and not from the future beyond a second).
func (n *Nonces) Valid(nonce string) bool {
	if base64.RawURLEncoding.DecodedLen(len(nonce)) != nonceBytes {
		return false
	}
	var b [nonceBytes]byte
	if _, err := base64.RawURLEncoding.Decode(b[:], []byte(nonce)); err != nil {
		return false
	}
	ok := false
	for _, k := range n.keys {
		if hmac.Equal(b[8:], n.mac(k, b[:8])) {
			ok = true
		}
	}
	if !ok {
		return false
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	now := n.now()
	return !issued.After(now.Add(time.Second)) && now.Sub(issued) < n.lifetime
}

func (n *Nonces) mac(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)[:nonceMACBytes]
}
