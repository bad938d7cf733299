package server

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// otlpReceiverEnv names the binary of .ci/otlpreceiver: the OpenTelemetry
// Collector's own OTLP receiver (go.opentelemetry.io/collector/receiver/otlpreceiver)
// printing what it receives as OTLP JSON.
const otlpReceiverEnv = "TOKENTAILOR_OTLP_RECEIVER"

// otlpReceiver is a running .ci/otlpreceiver.
type otlpReceiver struct {
	grpc, http string
	lines      chan string
}

// startOTLPReceiver starts the receiver or skips the test when it is not built.
func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	bin := os.Getenv(otlpReceiverEnv)
	if bin == "" {
		t.Skipf("%s is not set: build the Collector's OTLP receiver with (cd .ci/otlpreceiver && go build -o /tmp/otlpreceiver .) and set %s=/tmp/otlpreceiver (.ci/run does)", otlpReceiverEnv, otlpReceiverEnv)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%s: %v", otlpReceiverEnv, err)
	}
	cmd := exec.Command(bin)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // the receiver stops when its stdin closes
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	r := &otlpReceiver{lines: make(chan string, 64)}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	first := make(chan string, 1)
	go func() {
		defer close(r.lines)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-first:
		if !ok {
			t.Fatal("the OTLP receiver stopped before listening")
		}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "grpc":
				r.grpc = v
			case "http":
				r.http = v
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the OTLP receiver did not start within 30s")
	}
	if r.grpc == "" || r.http == "" {
		t.Fatal("the OTLP receiver did not say where it listens")
	}
	return r
}

// otlpJSON is the part of an OTLP/JSON ExportTraceServiceRequest the test reads.
type otlpJSON struct {
	ResourceSpans []struct {
		Resource struct {
			Attributes []otlpKV `json:"attributes"`
		} `json:"resource"`
		ScopeSpans []struct {
			Spans []struct {
				TraceID      string   `json:"traceId"`
				ParentSpanID string   `json:"parentSpanId"`
				Name         string   `json:"name"`
				Kind         int      `json:"kind"`
				Attributes   []otlpKV `json:"attributes"`
			} `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

type otlpKV struct {
	Key   string `json:"key"`
	Value struct {
		StringValue string `json:"stringValue"`
	} `json:"value"`
}

func kvs(l []otlpKV) map[string]string {
	m := map[string]string{}
	for _, kv := range l {
		m[kv.Key] = kv.Value.StringValue
	}
	return m
}

// TestTracingToARealOTLPReceiver: with each protocol, a Check's span reaches
// the Collector's OTLP receiver, in the request's trace, with its resource;
// the batch delay is a minute, so only the flush at shutdown (within
// listen.shutdown_grace) can have sent it.
func TestTracingToARealOTLPReceiver(t *testing.T) {
	recv := startOTLPReceiver(t)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
	tests := []struct {
		protocol string
		endpoint string
		trace    string
	}{
		{protocol: "grpc", endpoint: "http://" + recv.grpc, trace: "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"},
		{protocol: "http/protobuf", endpoint: "http://" + recv.http, trace: "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"},
	}
	for _, tt := range tests {
		t.Run(tt.protocol, func(t *testing.T) {
			cfg := baseConfig + "tracing:\n  enabled: true\n  endpoint: " + tt.endpoint + "\n  protocol: " + tt.protocol +
				"\n  resource_attributes: {deployment.environment.name: otlp-test}\n"
			h := newHarness(t, cfg)
			tok := h.token(nil)
			resp := h.check("GET", "/orders/1", map[string]string{"authorization": "Bearer " + tok, "traceparent": "00-" + tt.trace + "-00f067aa0ba902b7-01"})
			if httpStatus(resp) != 200 {
				t.Fatalf("want allow: %v", resp)
			}
			stopped := time.Now()
			h.stop() // flushes the exporter
			deadline := time.After(5 * time.Second)
			for {
				select {
				case line, ok := <-recv.lines:
					if !ok {
						t.Fatal("the OTLP receiver stopped")
					}
					var req otlpJSON
					if err := json.Unmarshal([]byte(line), &req); err != nil {
						t.Fatalf("receiver output: %v", err)
					}
					for _, rs := range req.ResourceSpans {
						res := kvs(rs.Resource.Attributes)
						for _, ss := range rs.ScopeSpans {
							for _, s := range ss.Spans {
								if !strings.EqualFold(s.TraceID, tt.trace) || s.Name != CheckSpanName {
									continue
								}
								a := kvs(s.Attributes)
								if s.ParentSpanID != "00f067aa0ba902b7" || s.Kind != 2 || a["tokentailor.decision"] != "allow" || a["tokentailor.route"] != "orders" {
									t.Fatalf("span: parent %s kind %d attributes %v", s.ParentSpanID, s.Kind, a)
								}
								if res["service.name"] != "tokentailor" || res["deployment.environment.name"] != "otlp-test" {
									t.Fatalf("resource %v", res)
								}
								if strings.Contains(line, tok) {
									t.Fatal("the token reached the collector")
								}
								t.Logf("%s: the Check span reached the receiver %v after stop began", tt.protocol, time.Since(stopped).Round(time.Millisecond))
								return
							}
						}
					}
				case <-deadline:
					t.Fatal("the Check span did not reach the OTLP receiver")
				}
			}
		})
	}
}
