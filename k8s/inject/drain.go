package inject

import "time"

// Graceful termination of an injected pod (k8s/README.md, "Draining"). When
// the pod starts terminating, Services and load balancers take a few seconds
// to stop sending to it:
//
//   - Envoy (tokentailor-proxy) has no drain of its own on SIGTERM, so a
//     preStop sleep of ProxyPreStopSeconds keeps it taking traffic meanwhile;
//     then SIGTERM stops it;
//   - tokentailor gets SIGTERM at once (no preStop): it reports not-ready and
//     NOT_SERVING but keeps answering new Checks for listen.drain, then waits
//     up to listen.shutdown_grace for Checks in flight. Its drain must outlast
//     the last Check Envoy can start: ProxyPreStopSeconds plus Envoy's
//     ext_authz timeout (1s in envoy/sidecar.yaml) ≤ TokentailorDrain;
//   - the pod's terminationGracePeriodSeconds must cover tokentailor's drain
//     and shutdown grace: the webhook raises a shorter one to
//     MinTerminationGracePeriodSeconds.
//
// The k8s tests check these relations against envoy/sidecar.yaml and the
// config package's defaults.
const (
	// ProxyPreStopSeconds is how long Envoy keeps serving after the pod starts
	// terminating, before it gets SIGTERM.
	ProxyPreStopSeconds = 4
	// TokentailorDrain is tokentailor's listen.drain default: after SIGTERM it
	// answers new Checks this long while reporting not-ready.
	TokentailorDrain = 5 * time.Second
	// TokentailorShutdownGrace is tokentailor's listen.shutdown_grace default:
	// after the drain, Checks in flight get this long to finish.
	TokentailorShutdownGrace = 10 * time.Second
	// MinTerminationGracePeriodSeconds is the shortest grace period an
	// injected pod gets: tokentailor's drain and shutdown grace, plus 5 s for
	// the kubelet and the app.
	MinTerminationGracePeriodSeconds int64 = int64((TokentailorDrain+TokentailorShutdownGrace)/time.Second) + 5
)
