// Package sharedtest gives tests of the packages that take a
// *sharedcache.Cache a connected client of a real redis-server (see
// redistest), as one tokentailor replica would hold. It lives apart from
// redistest because sharedcache's own tests import redistest.
package sharedtest

import (
	"testing"
	"time"

	"github.com/tokentailor/tokentailor/extauthz/sharedcache"
)

// Secret is the key secret every test replica shares (at least 32 bytes).
const Secret = "a deployment secret of at least 32 bytes"

// Connect returns a client of the Redis at addr keyed with Secret, with
// timeout as its per-command timeout (zero: the default), closed when the
// test ends. It fails the test unless the client connects within 5 s.
func Connect(t testing.TB, addr string, timeout time.Duration) *sharedcache.Cache {
	t.Helper()
	c, err := sharedcache.New(sharedcache.Options{Addresses: []string{addr}, Secret: []byte(Secret), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	WaitConnected(t, c, "shared cache")
	return c
}

// WaitConnected fails the test unless c connects to Redis within 5 s;
// what names c in the failure.
func WaitConnected(t testing.TB, c *sharedcache.Cache, what string) {
	t.Helper()
	select {
	case <-c.Connected():
	case <-time.After(5 * time.Second):
		t.Fatal(what + " did not connect to redis-server")
	}
}
