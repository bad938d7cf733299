package redistest

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// SentinelSet is a master, one replica of it and one Sentinel (quorum 1)
// watching them under Name, all on 127.0.0.1: what a sentinel-mode
// shared_cache points its addresses at.
type SentinelSet struct {
	Name                      string
	Master, Replica, Sentinel *Server
}

// StartSentinel starts the set and waits until the replica is in sync and
// the Sentinel knows both. A master that stops answering is down after
// 1 s, so a failover (KillMaster) takes a few seconds.
func StartSentinel(t testing.TB, name string) *SentinelSet {
	t.Helper()
	s := &SentinelSet{Name: name}
	s.Master = Start(t)
	s.Replica = StartWith(t, Options{Config: fmt.Sprintf("replicaof 127.0.0.1 %d\n", s.Master.Port())})
	waitFor(t, 10*time.Second, "the replica in sync with the master", func() bool {
		return s.Replica.Info("replication")["master_link_status"] == "up"
	})
	s.Sentinel = StartWith(t, Options{
		Config: fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 5000\n", name, s.Master.Port()),
		Args:  []string{"--sentinel"},
		Ready: "+monitor master " + name,
	})
	waitFor(t, 15*time.Second, "the Sentinel to know the replica", func() bool {
		r, err := Do(s.Sentinel.Addr(), "SENTINEL", "REPLICAS", name)
		return err == nil && len(r) > 0
	})
	return s
}

// MasterAddr is the master's address as the Sentinel tells it.
func (s *SentinelSet) MasterAddr(t testing.TB) string {
	t.Helper()
	r := s.Sentinel.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Name)
	if len(r) != 2 {
		t.Fatalf("SENTINEL GET-MASTER-ADDR-BY-NAME: %q", r)
	}
	return r[0] + ":" + r[1]
}

// KillMaster kills the master (SIGKILL) and waits until the Sentinel has
// promoted the replica; it returns how long that took.
func (s *SentinelSet) KillMaster(t testing.TB) time.Duration {
	t.Helper()
	start := time.Now()
	s.Master.Stop()
	waitFor(t, 30*time.Second, "the Sentinel to promote the replica", func() bool {
		r, err := Do(s.Sentinel.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Name)
		return err == nil && len(r) == 2 && r[1] == strconv.Itoa(s.Replica.Port()) &&
			s.Replica.Info("replication")["role"] == "master"
	})
	return time.Since(start)
}

// Cluster is a Redis Cluster of masters on 127.0.0.1, the slots split
// evenly between them, without replicas.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n masters (cluster-enabled), gives each a third (for
// n = 3) of the slots, introduces them to each other with CLUSTER MEET and
// waits until every node says cluster_state:ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{}
	bus := make([]int, n)
	for i := range n {
		bus[i] = FreePort(t)
		c.Nodes = append(c.Nodes, StartWith(t, Options{Config: fmt.Sprintf(
			"cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 2000\ncluster-port %d\n", bus[i])}))
	}
	const slots = 16384
	for i, node := range c.Nodes {
		from, to := i*slots/n, (i+1)*slots/n-1
		if got := node.Command("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(from), strconv.Itoa(to)); got != "+OK" {
			t.Fatalf("CLUSTER ADDSLOTSRANGE %d %d on node %d: %s", from, to, i, got)
		}
	}
	for i, node := range c.Nodes[1:] {
		if got := c.Nodes[0].Command("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(node.Port()), strconv.Itoa(bus[i+1])); got != "+OK" {
			t.Fatalf("CLUSTER MEET node %d: %s", i+1, got)
		}
	}
	waitFor(t, 20*time.Second, "every node to say cluster_state:ok", func() bool {
		for _, node := range c.Nodes {
			info := ParseInfo(node.Command("CLUSTER", "INFO"))
			if info["cluster_state"] != "ok" || info["cluster_known_nodes"] != strconv.Itoa(n) {
				return false
			}
		}
		return true
	})
	return c
}

// Addrs are the nodes' addresses: the seed nodes of a cluster-mode client.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// waitFor polls cond every 50 ms until it holds, or fails the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: waited %v for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
