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

// WaitReplicated waits until the replica has applied all that the master
// had written when it was called (see Cluster.WaitReplicated).
func (s *SentinelSet) WaitReplicated(t testing.TB) {
	t.Helper()
	want := replOffset(t, s.Master)
	waitFor(t, 10*time.Second, fmt.Sprintf("the replica to apply offset %d", want), func() bool {
		return s.Replica.Info("replication")["master_link_status"] == "up" && replOffset(t, s.Replica) >= want
	})
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

// Cluster is a Redis Cluster on 127.0.0.1: masters with the slots split
// evenly between them and, when asked for, one replica each.
type Cluster struct {
	// Masters hold the slots; Replicas[i], when present, replicates
	// Masters[i].
	Masters, Replicas []*Server
	bus               map[*Server]int // cluster bus port of each node
}

// StartCluster starts n masters (cluster-enabled), gives each an even share
// of the slots, introduces them to each other with CLUSTER MEET (no
// redis-cli needed) and waits until every node says cluster_state:ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{bus: map[*Server]int{}}
	for range n {
		c.Masters = append(c.Masters, c.startNode(t))
	}
	const slots = 16384
	for i, node := range c.Masters {
		from, to := i*slots/n, (i+1)*slots/n-1
		if got := node.Command("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(from), strconv.Itoa(to)); got != "+OK" {
			t.Fatalf("CLUSTER ADDSLOTSRANGE %d %d on node %d: %s", from, to, i, got)
		}
	}
	c.meet(t, c.Masters[1:])
	return c
}

// StartClusterWithReplicas is StartCluster plus one replica per master, in
// sync when it returns: a killed master fails over to its replica after
// the node timeout (2 s).
func StartClusterWithReplicas(t testing.TB, n int) *Cluster {
	t.Helper()
	c := StartCluster(t, n)
	for range n {
		c.Replicas = append(c.Replicas, c.startNode(t))
	}
	c.meet(t, c.Replicas)
	for i, r := range c.Replicas {
		id := c.Masters[i].Command("CLUSTER", "MYID")
		waitFor(t, 10*time.Second, "the new node to learn its master", func() bool {
			return r.Command("CLUSTER", "REPLICATE", id) == "+OK"
		})
	}
	waitFor(t, 20*time.Second, "every replica in sync", func() bool {
		for _, r := range c.Replicas {
			if r.Info("replication")["master_link_status"] != "up" {
				return false
			}
		}
		return true
	})
	return c
}

func (c *Cluster) startNode(t testing.TB) *Server {
	t.Helper()
	bus := FreePort(t)
	s := StartWith(t, Options{Config: fmt.Sprintf(
		"cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 2000\ncluster-port %d\n", bus)})
	c.bus[s] = bus
	return s
}

// meet introduces nodes to the cluster through its first master and waits
// until every node knows every other and says cluster_state:ok.
func (c *Cluster) meet(t testing.TB, nodes []*Server) {
	t.Helper()
	for _, node := range nodes {
		if got := c.Masters[0].Command("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(node.Port()), strconv.Itoa(c.bus[node])); got != "+OK" {
			t.Fatalf("CLUSTER MEET %s: %s", node.Addr(), got)
		}
	}
	all := c.Nodes()
	waitFor(t, 20*time.Second, "every node to say cluster_state:ok", func() bool {
		for _, node := range all {
			info := ParseInfo(node.Command("CLUSTER", "INFO"))
			if info["cluster_state"] != "ok" || info["cluster_known_nodes"] != strconv.Itoa(len(all)) {
				return false
			}
		}
		return true
	})
}

// Nodes are the masters, then the replicas.
func (c *Cluster) Nodes() []*Server {
	return append(append([]*Server(nil), c.Masters...), c.Replicas...)
}

// KillMaster kills master i (SIGKILL) and waits until its replica has taken
// over (role master, cluster_state:ok on it); it returns how long that took.
func (c *Cluster) KillMaster(t testing.TB, i int) time.Duration {
	t.Helper()
	start := time.Now()
	c.Masters[i].Stop()
	r := c.Replicas[i]
	waitFor(t, 30*time.Second, "the replica to take over the killed master's slots", func() bool {
		return r.Info("replication")["role"] == "master" && ParseInfo(r.Command("CLUSTER", "INFO"))["cluster_state"] == "ok"
	})
	return time.Since(start)
}

// WaitReplicated waits until every replica has applied all that its master
// had written when it was called: then a master killed loses no write to
// the failover. (WAIT does not do this from a connection of its own: it
// waits only for the writes made on its connection, none.)
func (c *Cluster) WaitReplicated(t testing.TB) {
	t.Helper()
	for i, r := range c.Replicas {
		want := replOffset(t, c.Masters[i])
		waitFor(t, 10*time.Second, fmt.Sprintf("replica %d to apply offset %d", i, want), func() bool {
			return r.Info("replication")["master_link_status"] == "up" && replOffset(t, r) >= want
		})
	}
}

// replOffset is s's replication offset: what a master wrote, what a
// replica applied.
func replOffset(t testing.TB, s *Server) int64 {
	t.Helper()
	v := s.Info("replication")["master_repl_offset"]
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("redistest: master_repl_offset %q: %v", v, err)
	}
	return n
}

// Addrs are the nodes' addresses: the seed nodes of a cluster-mode client.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes() {
		out = append(out, n.Addr())
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
