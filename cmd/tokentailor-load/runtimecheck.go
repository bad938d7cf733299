package main

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// floorRuntime reads the runtime line the floor printed first in its log.
func floorRuntime(logPath string) (string, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "GOGC=") {
		return "", fmt.Errorf("floor log %s does not start with its runtime settings", logPath)
	}
	return strings.TrimSpace(line), nil
}

// serverRuntime reads tokentailor's runtime settings from the Go collector
// of its admin /metrics (go_gc_gogc_percent, go_gc_gomemlimit_bytes,
// go_sched_gomaxprocs_threads), so what is compared is what the process
// applied, not what its config asked for, and its codec from the build
// settings of binary.
func serverRuntime(ctx context.Context, admin, binary string) (string, error) {
	body, err := getOK(ctx, http.DefaultClient, "http://"+admin+"/metrics")
	if err != nil {
		return "", err
	}
	defer body.Close()
	rt, err := parseRuntimeMetrics(body)
	if err != nil {
		return "", err
	}
	fast, err := builtFastMarshal(binary)
	if err != nil {
		// A wrapper script, say: the runtime line then differs from the
		// floor's, which bench reports as a warning.
		fmt.Printf("WARNING: cannot tell how %s marshals its answers: %v\n", binary, err)
		return rt + " codec=unknown", nil
	}
	return rt + " " + codecSetting(fast), nil
}

// builtFastMarshal reports whether the Go binary at path (a bare name is
// looked up in PATH, as exec does) was built with the build tag vtprotobuf
// (server.FastMarshal in that binary).
func builtFastMarshal(path string) (bool, error) {
	path, err := exec.LookPath(path)
	if err != nil {
		return false, err
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("build settings of %s: %w", path, err)
	}
	for _, s := range info.Settings {
		if s.Key == "-tags" && slices.Contains(strings.Split(s.Value, ","), fastMarshalTag) {
			return true, nil
		}
	}
	return false, nil
}

// fastMarshalTag is the build tag under which go-control-plane's generated
// marshalling code, and so server.FastMarshal, is compiled in.
const fastMarshalTag = "vtprotobuf"

// codecSetting states how a server marshals its answers, in the runtime
// line: the floor and tokentailor must marshal alike for a fair ratio.
func codecSetting(fast bool) string {
	if fast {
		return "codec=" + fastMarshalTag
	}
	return "codec=protobuf-go"
}

// parseRuntimeMetrics picks the three runtime gauges out of a Prometheus
// text exposition and formats them as the floor states its own.
func parseRuntimeMetrics(r io.Reader) (string, error) {
	want := map[string]float64{"go_gc_gogc_percent": -2, "go_gc_gomemlimit_bytes": -2, "go_sched_gomaxprocs_threads": -2}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if _, known := want[name]; !ok || !known {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return "", fmt.Errorf("metric %s: %w", name, err)
		}
		want[name] = v
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	for name, v := range want {
		if v == -2 {
			return "", fmt.Errorf("metric %s missing", name)
		}
	}
	limit := int64(-1) // math.MaxInt64, "no limit", does not survive float64
	if v := want["go_gc_gomemlimit_bytes"]; v < 1<<62 {
		limit = int64(v)
	}
	return formatRuntime(int(want["go_gc_gogc_percent"]), limit, int(want["go_sched_gomaxprocs_threads"])), nil
}

// noteRuntime prints what a server runs with and, for tokentailor, whether
// it is what the floor runs with: a floor on other GC settings is not a fair
// floor (issue 14).
func (b *benchRun) noteRuntime(name, rt string) {
	switch {
	case name == "floor":
		b.floorRT = rt
		fmt.Printf("runtime of floor: %s (tokentailor's defaults: runtime.gc_percent, runtime.memory_limit auto)\n", rt)
	case b.floorRT == "":
		fmt.Printf("runtime of %s: %s\n", name, rt)
	case rt == b.floorRT:
		fmt.Printf("runtime of %s: %s, the same as the floor\n", name, rt)
	default:
		fmt.Printf("WARNING: runtime of %s: %s, the floor's: %s; ratios compare unlike settings\n", name, rt, b.floorRT)
	}
}
