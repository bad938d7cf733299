package authztest

import (
	"sync/atomic"
	"time"
)

// Clock is a settable clock for tests, safe for concurrent use: pass its
// Now where a component takes a clock, and Advance it instead of sleeping.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a Clock that reads start until advanced.
func NewClock(start time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(start.UnixNano())
	return c
}

// Now is the clock's current time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
