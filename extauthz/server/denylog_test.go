package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// A flood of denials costs a few log lines a second, while the decisions
// metric still counts every one.
func TestDenyLogsAreSampledMetricsExact(t *testing.T) {
	h := newHarness(t, baseConfig)
	const n = 60
	for range n {
		if resp := h.check("GET", "/orders", nil); resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
			t.Fatalf("check without a token: %v", resp)
		}
	}
	logs := h.logs.String()
	lines := strings.Count(logs, `"msg":"deny"`)
	// The checks may straddle a second boundary: at most two windows.
	if lines == 0 || lines > 2*DenyLinesPerSecond {
		t.Fatalf("%d deny lines for %d denials, want 1 to %d", lines, n, 2*DenyLinesPerSecond)
	}
	res, err := http.Get("http://" + h.srv.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	want := `tokentailor_decisions_total{reason="credential_missing",result="deny",route="orders"} 60`
	if !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %s:\n%s", want, body)
	}
}
