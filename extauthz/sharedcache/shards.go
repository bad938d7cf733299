package sharedcache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/sony/gobreaker/v2"
)

// A Redis Cluster gives each master its own circuit breaker: a master that
// dies or stalls opens the breaker of the keys it serves, and the other
// masters' keys are served on. The Cache reads the slot map (CLUSTER SLOTS)
// every topologyRefresh, as rueidis does for its routing, and a call goes
// through the breaker of the master that serves its key's hash slot. When a
// replica takes a dead master's slots over, it comes with a breaker of its
// own, closed: those keys are read again as soon as the map names it, not
// after the dead master's cooldown.
//
// The Cache and rueidis read the map apart, so for a moment the Cache may
// count a key's calls against the new master while rueidis still sends
// them to the dead one. The breaker of a master that joins the map after
// the first reading therefore counts no failure during its first
// newMasterGrace, long enough for rueidis to have re-read the map (its own
// refresh, or the one a call to the dead node starts). Calls made
// meanwhile still fail within Timeout (at once for a refused connection),
// and succeed once rueidis routes them to the new master.

// newMasterGrace is how long the breaker of a master new to the slot map
// counts no failure.
const newMasterGrace = 2 * topologyRefresh

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// slotRange is one entry of CLUSTER SLOTS: the master serving from..to.
type slotRange struct {
	from, to uint16
	id, addr string // the master's node ID and host:port
}

// retiredBreaker is the breaker of a master that left the slot map, kept
// until it is given back to that master or until is past.
type retiredBreaker struct {
	mb    *masterBreaker
	until time.Time
}

// maxRetired bounds the retired breakers kept.
const maxRetired = clusterSlots

// masterBreaker is the breaker of one cluster master.
type masterBreaker struct {
	key   string // id and addr: a master that moves gets a new breaker
	addr  string
	cb    *gobreaker.CircuitBreaker[struct{}]
	state atomic.Int32 // gobreaker.State, kept for the gauge
}

// slotMap routes each hash slot to its master's breaker.
type slotMap struct {
	ranges  []slotRange // sorted by from
	masters []*masterBreaker
	slot    [clusterSlots]uint16 // index+1 in masters; 0 for a slot no master serves
	// uncovered: some slot has no master, and its keys go through the
	// cache-wide breaker.
	uncovered bool
}

// breakerFor is the breaker of the master serving key: the cache-wide
// breaker in standalone mode, before the map (or the Sentinel's master) is
// read, and for a slot no master serves.
func (c *Cache) breakerFor(key string) *gobreaker.CircuitBreaker[struct{}] {
	if m := c.slots.Load(); m != nil {
		if i := m.slot[keySlot(key)]; i > 0 {
			return m.masters[i-1].cb
		}
	}
	return c.breaker
}

// newBreaker builds a breaker; node is empty for the cache-wide one, else
// the master's address, for logs. Failures before grace do not count.
func (c *Cache) newBreaker(node string, grace time.Time, state *atomic.Int32) *gobreaker.CircuitBreaker[struct{}] {
	name := "shared_cache"
	if node != "" {
		name += " " + node
	}
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     c.opts.BreakerCooldown,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			return n.ConsecutiveFailures >= uint32(c.opts.BreakerFailures)
		},
		IsExcluded: func(err error) bool {
			return errors.Is(err, errCallerGone) || (err != nil && time.Now().Before(grace))
		},
		// Called with the breaker locked: touches nothing of the breaker.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			c.breakerChanged(state, to)
			level := slog.LevelWarn
			if to == gobreaker.StateClosed {
				level = slog.LevelInfo
			}
			attrs := []any{"from", from.String(), "to", to.String()}
			if node != "" {
				attrs = append(attrs, "node", node)
			}
			c.log.Log(context.Background(), level, "shared cache circuit breaker", attrs...)
		},
	})
}

// breakerChanged records that the breaker whose state is kept in state
// went to to, and exports the most open state among the breakers in use.
func (c *Cache) breakerChanged(state *atomic.Int32, to gobreaker.State) {
	c.gaugeMu.Lock()
	defer c.gaugeMu.Unlock()
	if state != nil {
		state.Store(int32(to))
	}
	m := c.slots.Load()
	var worst gobreaker.State
	if m == nil || m.uncovered {
		worst = gobreaker.State(c.state.Load())
	}
	if m != nil {
		for _, mb := range m.masters {
			worst = max(worst, gobreaker.State(mb.state.Load()))
		}
	}
	c.metrics.breakerState(worst)
}

// followSlots reads the slot map now and every topologyRefresh until ctx
// ends. A map that cannot be read leaves the last one in place; a run of
// failures is logged once, and so is its end.
func (c *Cache) followSlots(ctx context.Context, cl rueidis.Client) {
	tick := time.NewTicker(topologyRefresh)
	defer tick.Stop()
	failures := 0
	for {
		rctx, cancel := context.WithTimeout(ctx, topologyRefresh)
		ranges, err := readSlots(rctx, cl)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Once or twice in a row: no node answered in time.
			if failures++; failures == 3 {
				c.log.Warn("shared cache cannot read the cluster slot map; breakers follow the last one read", "error", err)
			}
		} else {
			if failures >= 3 {
				c.log.Info("shared cache reads the cluster slot map again")
			}
			failures = 0
			c.setSlots(ranges)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// followMaster is followSlots for sentinel mode: the master the client
// talks to (the Sentinels name it, and rueidis switches to a promoted
// replica when they announce it) serves every slot. It is read from the
// client every topologyRefresh, without a call to Redis; when it changes,
// the promoted master comes with a breaker of its own, closed, so that the
// calls the dead master failed do not hold its keys back for a cooldown.
func (c *Cache) followMaster(ctx context.Context, cl rueidis.Client) {
	tick := time.NewTicker(topologyRefresh)
	defer tick.Stop()
	last := ""
	for {
		if addr, ok := soleNode(cl); ok && addr != last {
			if last != "" {
				c.log.Info("shared cache follows the master the Sentinels named", "master", addr)
			}
			last = addr
			c.setSlots([]slotRange{{from: 0, to: clusterSlots - 1, id: addr, addr: addr}})
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// soleNode is the address of the one node cl talks to.
func soleNode(cl rueidis.Client) (string, bool) {
	nodes := cl.Nodes()
	if len(nodes) != 1 {
		return "", false
	}
	for addr := range nodes {
		return addr, true
	}
	return "", false
}

// errSlots marks a CLUSTER SLOTS reply that is not what Redis documents.
var errSlots = errors.New("unexpected CLUSTER SLOTS reply")

// readSlots reads the cluster's slot ranges and their masters, sorted,
// from the first node that answers with some (a node that serves no slot
// answers none, and rueidis too asks the next one), each given a quarter of
// topologyRefresh (in random order: a dead master stays in the map until
// its replica takes over, and a frozen one would take all the time).
func readSlots(ctx context.Context, cl rueidis.Client) (ranges []slotRange, err error) {
	for _, node := range cl.Nodes() {
		nctx, cancel := context.WithTimeout(ctx, topologyRefresh/4)
		ranges, err = readSlotsFrom(nctx, node)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err == nil && len(ranges) == 0 {
		err = fmt.Errorf("%w: no node known", errSlots)
	}
	if err != nil {
		return nil, err
	}
	return ranges, nil
}

// readSlotsFrom asks node for CLUSTER SLOTS.
func readSlotsFrom(ctx context.Context, node rueidis.Client) ([]slotRange, error) {
	entries, err := node.Do(ctx, node.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, err
	}
	if len(entries) > clusterSlots {
		return nil, fmt.Errorf("%w: %d ranges", errSlots, len(entries))
	}
	ranges := make([]slotRange, 0, len(entries))
	for _, e := range entries {
		r, err := parseSlotRange(e)
		if err != nil {
			return nil, err
		}
		ranges = append(ranges, r)
	}
	if err := sortRanges(ranges); err != nil {
		return nil, err
	}
	return ranges, nil
}

// sortRanges sorts a node's slot ranges and refuses a map that setSlots
// must not install: no range (a node that serves no slot answers none, and
// rueidis too then asks the next node) or ranges that overlap.
func sortRanges(ranges []slotRange) error {
	if len(ranges) == 0 {
		return fmt.Errorf("%w: no slot", errSlots)
	}
	slices.SortFunc(ranges, func(a, b slotRange) int { return cmp.Compare(a.from, b.from) })
	for i := 1; i < len(ranges); i++ {
		if ranges[i].from <= ranges[i-1].to {
			return fmt.Errorf("%w: slots %d-%d overlap %d-%d", errSlots, ranges[i].from, ranges[i].to, ranges[i-1].from, ranges[i-1].to)
		}
	}
	return nil
}

// parseSlotRange reads [from, to, [host, port, id, …], replicas…].
func parseSlotRange(e rueidis.RedisMessage) (slotRange, error) {
	f, err := e.ToArray()
	if err != nil || len(f) < 3 {
		return slotRange{}, fmt.Errorf("%w: an entry of %d fields", errSlots, len(f))
	}
	from, err1 := f[0].AsInt64()
	to, err2 := f[1].AsInt64()
	node, err3 := f[2].ToArray()
	if err := errors.Join(err1, err2, err3); err != nil || len(node) < 3 || from < 0 || from > to || to >= clusterSlots {
		return slotRange{}, fmt.Errorf("%w: slots %d-%d", errSlots, from, to)
	}
	host, _ := node[0].ToString() // empty when the node does not know its address
	port, err1 := node[1].AsInt64()
	id, err2 := node[2].ToString()
	if err1 != nil || err2 != nil || id == "" || port < 1 || port > 65535 {
		return slotRange{}, fmt.Errorf("%w: the master of slots %d-%d", errSlots, from, to)
	}
	return slotRange{from: uint16(from), to: uint16(to), id: id, addr: net.JoinHostPort(host, strconv.FormatInt(port, 10))}, nil
}

// setSlots installs ranges (sorted, not overlapping), keeping the breaker
// of every master that still serves slots. A master that left the map and
// comes back within retiredFor gets its breaker back, open or not (a node
// answering with an out-of-date map must not close a dead master's
// breaker); a master never seen gets a new breaker.
func (c *Cache) setSlots(ranges []slotRange) {
	c.slotsMu.Lock()
	defer c.slotsMu.Unlock()
	old := c.slots.Load()
	if old != nil && slices.Equal(old.ranges, ranges) {
		return
	}
	now := time.Now()
	kept := map[string]*masterBreaker{}
	for key, r := range c.retired {
		if now.Before(r.until) {
			kept[key] = r.mb
		}
	}
	if old != nil {
		for _, mb := range old.masters {
			kept[mb.key] = mb
		}
	}
	var grace time.Time // none for the masters of the first map
	if old != nil {
		grace = now.Add(newMasterGrace)
	}
	m := &slotMap{ranges: ranges}
	index := map[string]uint16{}
	for _, r := range ranges {
		key := r.id + " " + r.addr
		i, ok := index[key]
		if !ok {
			mb := kept[key]
			if mb == nil {
				mb = &masterBreaker{key: key, addr: r.addr}
				mb.cb = c.newBreaker(r.addr, grace, &mb.state)
			}
			m.masters = append(m.masters, mb)
			i = uint16(len(m.masters))
			index[key] = i
		}
		for s := int(r.from); s <= int(r.to); s++ {
			m.slot[s] = i
		}
	}
	m.uncovered = slices.Contains(m.slot[:], 0)
	// The breakers of masters that left the map are kept for a cooldown and
	// a grace, the longest a returning master's breaker can matter. Only in
	// cluster mode, where a node may answer an out-of-date map: in sentinel
	// mode rueidis switches to a master only once it answers as one, so a
	// master that comes back (a quick failback) gets a new breaker.
	retired := map[string]retiredBreaker{}
	for key, r := range c.retired {
		if _, in := index[key]; !in && now.Before(r.until) {
			retired[key] = r
		}
	}
	if old != nil && c.opts.Mode == ModeCluster {
		for _, mb := range old.masters {
			if _, in := index[mb.key]; !in && len(retired) < maxRetired {
				retired[mb.key] = retiredBreaker{mb: mb, until: now.Add(c.opts.BreakerCooldown + newMasterGrace)}
			}
		}
	}
	c.retired = retired
	c.slots.Store(m)
	c.breakerChanged(nil, 0)
	if c.opts.Mode == ModeCluster {
		c.log.Info("shared cache follows a new cluster slot map", "masters", len(m.masters), "ranges", len(ranges))
	}
}

// keySlot is key's Redis Cluster hash slot: the CRC16 (XMODEM) of its hash
// tag (between the first "{" and the next "}", when not empty), else of
// the whole key, modulo 16384.
func keySlot(key string) uint16 {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if n := strings.IndexByte(key[open+1:], '}'); n > 0 {
			key = key[open+1 : open+1+n]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^key[i]]
	}
	return crc % clusterSlots
}

// crc16Table holds the CRC16 (XMODEM, polynomial 0x1021) of each byte.
var crc16Table = func() (t [256]uint16) {
	for b := range t {
		crc := uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[b] = crc
	}
	return t
}()
