package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// counts are the counters a step reads before and after itself.
type counts struct {
	issuer int64            // introspection calls at the double
	redis  map[string]int64 // INFO commandstats: command → calls
	trips  []int64          // per replica: shared-cache calls that went to Redis
}

// snapshot reads every counter.
func (s *replicaSet) snapshot(ctx context.Context, rs []*child) (counts, error) {
	c := counts{issuer: s.iss.calls.Load()}
	info, err := s.rc.Do(ctx, s.rc.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		return c, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	c.redis = parseCommandStats(info)
	for _, r := range rs {
		n, err := sharedRoundTrips(ctx, r.admin)
		if err != nil {
			return c, fmt.Errorf("%s metrics: %w", r.name, err)
		}
		c.trips = append(c.trips, n)
	}
	return c, nil
}

// delta is what happened between two snapshots.
type delta struct {
	checks   int64
	issuer   int64
	commands map[string]int64 // calls per command, INFO and PING excluded
	// pings are the clients' keep-alive PINGs (rueidis sends one on an idle
	// connection every second or so): background, not a Check's.
	pings int64
	trips int64 // shared-cache calls to Redis, all replicas
}

func (d delta) redisCommands() int64 {
	var n int64
	for _, v := range d.commands {
		n += v
	}
	return n
}

func diff(before, after counts, checks int64) delta {
	d := delta{checks: checks, issuer: after.issuer - before.issuer, commands: map[string]int64{}}
	for k, v := range after.redis {
		n := v - before.redis[k]
		switch {
		case n <= 0, k == "info": // INFO is the snapshot's own
		case k == "ping":
			d.pings = n
		default:
			d.commands[k] = n
		}
	}
	for i := range after.trips {
		d.trips += after.trips[i] - before.trips[i]
	}
	return d
}

// parseCommandStats reads "cmdstat_get:calls=12,usec=…" lines into
// command → calls; subcommands keep their name ("client|caching").
func parseCommandStats(info string) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		name, isStat := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isStat {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					out[name] = n
				}
			}
		}
	}
	return out
}

// sharedRoundTrips reads from a replica's /metrics how many shared-cache
// calls went to Redis: tokentailor_shared_cache_requests_total with a
// result that needed Redis's answer (hit, miss, ok, malformed). A
// local_hit, an error and an open breaker made no round trip that answered.
func sharedRoundTrips(ctx context.Context, admin string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return parseRoundTrips(resp.Body)
}

// parseRoundTrips sums the round-trip results of the shared-cache request
// counter in a Prometheus text exposition.
func parseRoundTrips(r io.Reader) (int64, error) {
	const metric = "tokentailor_shared_cache_requests_total{"
	var n int64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, isMetric := strings.CutPrefix(sc.Text(), metric)
		labels, value, ok := strings.Cut(rest, "} ")
		if !isMetric || !ok {
			continue
		}
		switch {
		case strings.Contains(labels, `result="hit"`), strings.Contains(labels, `result="miss"`),
			strings.Contains(labels, `result="ok"`), strings.Contains(labels, `result="malformed"`):
		default:
			continue
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, fmt.Errorf("metric value %q: %w", value, err)
		}
		n += int64(f)
	}
	return n, sc.Err()
}
