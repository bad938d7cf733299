package redistest

import (
	"fmt"
	"testing"
)

// ClosedAddr returns a 127.0.0.1 address where nothing listens, for tests
// of a Redis that is down.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}
