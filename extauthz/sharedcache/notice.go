package sharedcache

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// sealVersion starts every sealed value and notice.
const sealVersion = 1

// sealer seals values and revocation notices with AES-256-GCM under a key
// derived from the deployment secret: Redis and its other clients can read
// neither, and cannot move a value to another key (the key is the
// additional data) or forge one.
type sealer struct{ aead cipher.AEAD }

func newSealer(secret []byte) (*sealer, error) {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("tokentailor/sharedcache/v1 seal"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// seal returns version ‖ nonce ‖ AES-GCM(plain) with aad as additional data.
func (s *sealer) seal(plain []byte, aad string) ([]byte, error) {
	n := s.aead.NonceSize()
	out := make([]byte, 1+n, 1+n+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return s.aead.Seal(out, out[1:], plain, []byte(aad)), nil
}

// open reverses seal; anything else is ErrMalformedValue.
func (s *sealer) open(msg []byte, aad string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(msg) < 1+n+s.aead.Overhead() || msg[0] != sealVersion {
		return nil, fmt.Errorf("%w: too short or of another version", ErrMalformedValue)
	}
	plain, err := s.aead.Open(nil, msg[1:1+n], msg[1+n:], []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("%w: not sealed with this secret for this key", ErrMalformedValue)
	}
	return plain, nil
}

// sealNotice seals a revocation notice for the channel.
func (c *Cache) sealNotice(issuer, tokenHash string) (string, error) {
	b, err := c.sealer.seal([]byte(issuer+"\x00"+tokenHash), "notice:"+c.channel)
	return string(b), err
}

// openNotice reverses sealNotice.
func (c *Cache) openNotice(msg string) (issuer, tokenHash string, err error) {
	plain, err := c.sealer.open([]byte(msg), "notice:"+c.channel)
	if err != nil {
		return "", "", err
	}
	issuer, tokenHash, ok := strings.Cut(string(plain), "\x00")
	if !ok {
		return "", "", fmt.Errorf("%w: notice without separator", ErrMalformedValue)
	}
	return issuer, tokenHash, nil
}

// subscribe keeps a subscription to the notice channel until ctx ends. The
// first confirmed subscription closes c.connected; every later one (after a
// loss) tells the handlers that notices may have been missed.
func (c *Cache) subscribe(ctx context.Context) {
	cl := *c.client.Load()
	backoff := newBackoff()
	var subscribed, everSubscribed atomic.Bool
	var once sync.Once
	for ctx.Err() == nil {
		subscribed.Store(false)
		dc, release := cl.Dedicate()
		wait := dc.SetPubSubHooks(rueidis.PubSubHooks{
			OnMessage: c.notice,
			OnSubscription: func(s rueidis.PubSubSubscription) {
				if s.Kind != "subscribe" {
					return
				}
				subscribed.Store(true)
				if !everSubscribed.Swap(true) {
					once.Do(func() { close(c.connected) })
					return
				}
				c.log.Info("shared cache revocation notices resubscribed; dropping local entries")
				c.dispatch(Revocation{All: true})
			},
		})
		err := dc.Do(ctx, dc.B().Subscribe().Channel(c.channel).Build()).Error()
		if err == nil {
			select {
			case err = <-wait:
			case <-ctx.Done():
			}
		}
		release()
		if subscribed.Load() {
			backoff.reset()
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("shared cache revocation notices lost", "error", err)
		if !backoff.wait(ctx) {
			return
		}
	}
}

// notice handles one message on the channel.
func (c *Cache) notice(m rueidis.PubSubMessage) {
	issuer, tokenHash, err := c.openNotice(m.Message)
	if err != nil {
		c.metrics.notice("malformed")
		c.log.Warn("shared cache: ignoring a revocation notice", "error", err)
		return
	}
	c.metrics.notice("received")
	c.dispatch(Revocation{Issuer: issuer, TokenHash: tokenHash})
}

// backoff waits 100 ms, doubling up to 2 s, between reconnection attempts.
type backoff struct{ next time.Duration }

const (
	backoffFirst = 100 * time.Millisecond
	backoffMax   = 2 * time.Second
)

func newBackoff() *backoff { return &backoff{next: backoffFirst} }

func (b *backoff) reset() { b.next = backoffFirst }

// wait sleeps for the next interval; false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, backoffMax)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
