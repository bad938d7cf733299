package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// replicasOptions configures the replicas scenario (issue 13).
type replicasOptions struct {
	load       loadOptions
	binary     string
	redis      string
	replicas   int
	distinct   int
	cold       int
	warmTokens int
	rounds     int
	slice      time.Duration
	transport  string
	pin        bool
	keep       bool
	logLevel   string
}

// replicasCmd runs the replicas scenario: N tokentailor replicas behind the
// load generator, with and without a shared_cache on one real redis-server.
func replicasCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("replicas", flag.ContinueOnError)
	var o replicasOptions
	loadFlags(fs, &o.load)
	fs.StringVar(&o.binary, "tokentailor", "", "tokentailor binary (default: go build ./cmd/tokentailor, run from the repository root)")
	fs.StringVar(&o.redis, "redis-server", "", "redis-server binary (default: $TOKENTAILOR_REDIS_SERVER, else the PATH)")
	fs.IntVar(&o.replicas, "replicas", 3, "tokentailor replicas sharing one Redis")
	fs.IntVar(&o.distinct, "distinct", 600, "distinct opaque tokens, each sent once to every replica")
	fs.IntVar(&o.cold, "cold", 5000, "opaque tokens introspected by one replica, then sent once to another (cold, served from Redis)")
	fs.IntVar(&o.warmTokens, "warm-tokens", 100, "distinct tokens in the warm pool")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds of the alternating warm comparison, without and with shared_cache")
	fs.DurationVar(&o.slice, "slice", 100*time.Millisecond, "length of the turns the replicas without and with shared_cache take within each warm round, in the order without, with, with, without, … (0: one replica's whole run, then the other's)")
	fs.StringVar(&o.transport, "transport", "unix", "tcp or unix")
	fs.BoolVar(&o.pin, "pin", true, "pin the generator to CPU 0 and the servers (Redis included) to CPU 1 with taskset, when possible")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, server logs)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "tokentailor's log level")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.replicas < 2 || o.distinct < 1 || o.cold < 1 || o.warmTokens < 1 || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "replicas: -replicas must be ≥ 2 and -distinct, -cold, -warm-tokens, -rounds ≥ 1")
		return 2
	}
	if err := checkSlice(o.slice); err != nil {
		fmt.Fprintln(os.Stderr, "replicas:", err)
		return 2
	}
	if o.redis == "" {
		o.redis = os.Getenv("TOKENTAILOR_REDIS_SERVER")
	}
	if o.redis == "" {
		var err error
		if o.redis, err = exec.LookPath("redis-server"); err != nil {
			fmt.Println("replicas: SKIP: redis-server not found (apt-get install redis-server, set TOKENTAILOR_REDIS_SERVER or pass -redis-server)")
			return 0
		}
	}
	ok, err := replicasRun(ctx, o)
	return verdictExit("replicas", ok, err)
}

// replicaSet is a bench run with one Redis and the replicas started so far.
type replicaSet struct {
	*benchRun
	o     replicasOptions
	redis *child
	rc    rueidis.Client // to read INFO commandstats; not cached, not tracked
	addr  string         // Redis host:port
	// sharedBlock is the config block of every replica that shares Redis,
	// with one key secret for all.
	sharedBlock string
}

func replicasRun(ctx context.Context, o replicasOptions) (bool, error) {
	dir, done, err := workDir(ctx, "tokentailor-replicas-", o.keep, &o.binary)
	if err != nil {
		return false, err
	}
	defer done()
	iss, err := newIssuer(time.Now)
	if err != nil {
		return false, err
	}
	if err := iss.start(); err != nil {
		return false, err
	}
	defer iss.stop()
	s := &replicaSet{o: o, benchRun: &benchRun{
		o: benchOptions{load: o.load, binary: o.binary, cacheMax: config.DefaultMaxEntries, logLevel: o.logLevel, keep: o.keep, pin: o.pin,
			slice: o.slice},
		dir: dir, iss: iss,
	}}
	s.pinSrv = s.pinning()
	if err := s.startRedis(ctx); err != nil {
		return false, err
	}
	defer s.redis.stop()
	defer s.rc.Close()
	fmt.Printf("replicas: %d tokentailor replicas, one redis-server at %s, %s transport\n", o.replicas, s.addr, o.transport)

	// 1. Calls to the authorization server per distinct opaque token.
	local, err := s.startReplicas(ctx, "local", false)
	if err != nil {
		return false, err
	}
	defer stopAll(local)
	without, err := s.spread(ctx, local, o.distinct)
	if err != nil {
		return false, fmt.Errorf("without shared_cache: %w", err)
	}
	stopAll(local)
	shared, err := s.startReplicas(ctx, "shared", true)
	if err != nil {
		return false, err
	}
	defer stopAll(shared)
	with, err := s.spread(ctx, shared, o.distinct)
	if err != nil {
		return false, fmt.Errorf("with shared_cache: %w", err)
	}
	callsOK := s.printSpread(without, with)

	// 2. Cold Check served from Redis, against the warm path.
	cold, warm, err := s.coldFromRedis(ctx, shared[0], shared[1])
	if err != nil {
		return false, err
	}
	stopAll(shared)
	coldOK := s.printCold(cold, warm)

	// 3. Warm opaque Check, without and with shared_cache, in turns, on
	// two fresh replicas: both have seen the same tokens, so their heaps
	// (and the collector's work) hold the same entries.
	pair := make([]*child, 0, 2)
	defer func() { stopAll(pair) }()
	for _, r := range []struct{ name, extra string }{{"warm-local", ""}, {"warm-shared", s.sharedBlock}} {
		c, err := s.startReplica(ctx, r.name, r.extra)
		if err != nil {
			return false, err
		}
		pair = append(pair, c)
	}
	warmOK, err := s.alternateWarm(ctx, pair[0], pair[1])
	if err != nil {
		return false, err
	}
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	fmt.Printf("\nverdicts (issue 13): issuer calls per distinct token = 1: %s; cold from Redis ≤ 1 round trip over warm: %s; warm with shared_cache within 10 %%: %s\n",
		verdict(callsOK), verdict(coldOK), verdict(warmOK))
	return callsOK && coldOK && warmOK, nil
}

// startRedis starts redis-server on a free 127.0.0.1 port, persistence off,
// and connects the client that reads its command statistics.
func (s *replicaSet) startRedis(ctx context.Context) error {
	var err error
	if s.addr, err = freePort(); err != nil {
		return err
	}
	_, port, _ := strings.Cut(s.addr, ":")
	conf := filepath.Join(s.dir, "redis.conf")
	if err := os.WriteFile(conf, []byte("bind 127.0.0.1\nprotected-mode no\nsave \"\"\nappendonly no\ndir "+s.dir+"\nport "+port+"\n"), 0o600); err != nil {
		return err
	}
	key := filepath.Join(s.dir, "shared-cache-key")
	if err := os.WriteFile(key, []byte(randomToken("replicas-share-one-secret-")+"\n"), 0o600); err != nil {
		return err
	}
	s.sharedBlock = fmt.Sprintf(sharedCacheBlock, s.addr, key)
	if s.redis, err = s.start("redis", []string{s.o.redis, conf}, nil); err != nil {
		return err
	}
	err = s.redis.waitUp(ctx, func() error {
		rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.addr}, DisableCache: true, ForceSingleClient: true, DisableRetry: true})
		if err == nil {
			s.rc = rc
		}
		return err
	})
	if err != nil {
		s.redis.stop()
	}
	return err
}

// replicasRateLimit lifts introspection.rate_limit (default 100/s, which
// the flood scenario measures) out of the way: here the calls are counted,
// and a refused call would be a 503, not a call saved.
const replicasRateLimit = ", rate_limit: {per_second: 1000000, burst: 1000000}"

// sharedCacheBlock is the shared_cache block of the replicas that share
// Redis: its address and a key secret file.
const sharedCacheBlock = `shared_cache:
  addresses: %s
  key_secret: {file: %s}
`

// startReplicas starts s.o.replicas tokentailors named prefix-0 …, with
// s.sharedBlock when shared, and waits until each is ready.
func (s *replicaSet) startReplicas(ctx context.Context, prefix string, shared bool) ([]*child, error) {
	extra := ""
	if shared {
		extra = s.sharedBlock
	}
	var out []*child
	for i := range s.o.replicas {
		c, err := s.startReplica(ctx, fmt.Sprintf("%s-%d", prefix, i), extra)
		if err != nil {
			stopAll(out)
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// startReplica writes the bench's config (plus extra) for name, starts
// tokentailor on it and waits until /readyz answers 200.
func (s *replicaSet) startReplica(ctx context.Context, name, extra string) (*child, error) {
	return s.startServe(ctx, name, "eddsa", config.DefaultMaxEntries, replicasRateLimit, extra)
}

func stopAll(cs []*child) {
	for _, c := range cs {
		select {
		case <-c.done:
		default:
			c.stop()
		}
	}
}
