package authzfilter

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/codes"
)

// AppendMode selects how HeaderValueOption's append fields are read; see the
// package doc.
type AppendMode int

const (
	// AppendLegacy reads only the deprecated BoolValue append (Envoy ≤ 1.36,
	// and releases with the revert envoyproxy/envoy#43442).
	AppendLegacy AppendMode = iota
	// AppendAction reads append_action when append is unset (Envoy 1.37.0,
	// envoyproxy/envoy#42878).
	AppendAction
)

// Outcome is what the filter did with a request.
type Outcome int

const (
	// Allowed: the authorization service said OK; the request goes upstream
	// with the mutations applied.
	Allowed Outcome = iota
	// Denied: the service denied; the client gets Status, Header and Body.
	Denied
	// Failed: the check failed (gRPC error, timeout, error_response, an
	// invalid mutation); the client gets status_on_error.
	Failed
	// FailedOpen: the check failed and failure_mode_allow let the request
	// through unchanged.
	FailedOpen
)

// String names the outcome for logs.
func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case Denied:
		return "denied"
	case Failed:
		return "failed"
	case FailedOpen:
		return "failed-open"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Sentinel errors in Result.Err; match with errors.Is.
var (
	// ErrCheck: the Check call failed or returned no answer.
	ErrCheck = errors.New("ext_authz check failed")
	// ErrErrorResponse: the service answered with error_response.
	ErrErrorResponse = errors.New("ext_authz error_response")
	// ErrInvalidMutation: with validate_mutations, a header name or value
	// the filter refuses.
	ErrInvalidMutation = errors.New("ext_authz invalid header mutation")
	// ErrHeadersTooLarge: the mutated headers exceed max_request_headers_kb.
	ErrHeadersTooLarge = errors.New("ext_authz request headers too large")
)

// Filter is the ext_authz filter configuration Apply and Proxy follow.
type Filter struct {
	// Name is the filter's name, the key of per-route configs.
	Name string
	// Cluster is grpc_service.envoy_grpc.cluster_name.
	Cluster string
	// Timeout is grpc_service.timeout (Envoy's default: 200ms).
	Timeout time.Duration
	// StatusOnError is status_on_error (default 403).
	StatusOnError int
	// FailureModeAllow is failure_mode_allow.
	FailureModeAllow bool
	// ValidateMutations is validate_mutations.
	ValidateMutations bool
	// MaxRequestHeadersKB is the connection manager's max_request_headers_kb
	// (default 60).
	MaxRequestHeadersKB int
	// AppendMode selects the header append model (default AppendLegacy).
	AppendMode AppendMode
	// Check holds encode_raw_headers and allowed/disallowed headers; its
	// ContextExtensions is left nil (routes supply them).
	Check CheckOptions
}

// Result is the filter's verdict for one request.
type Result struct {
	// Outcome says what happened.
	Outcome Outcome
	// Status is the HTTP status sent to the client for Denied and Failed; 0 otherwise.
	Status int
	// Header is, for Allowed and FailedOpen, the request headers to send
	// upstream (a mutated copy); for Denied, the headers of the reply to the
	// client; nil for Failed.
	Header http.Header
	// Host is the :authority sent upstream (Allowed, FailedOpen).
	Host string
	// Path is the :path sent upstream, after query parameter mutations
	// (Allowed, FailedOpen).
	Path string
	// Body is the body of a denial.
	Body string
	// ResponseHeaders are OkHttpResponse.response_headers_to_add, applied to
	// the upstream's response by the proxy.
	ResponseHeaders []*corev3.HeaderValueOption
	// Err says why a check Failed or FailedOpen; it wraps a sentinel above.
	Err error
}

// Apply turns a Check answer (or the error of the call) into the filter's
// verdict for req, as Envoy's ext_authz filter does (see the package doc).
// req is not modified.
func Apply(resp *authv3.CheckResponse, callErr error, req Request, f *Filter) Result {
	statusOnError := f.StatusOnError
	if statusOnError == 0 {
		statusOnError = http.StatusForbidden
	}
	fail := func(err error) Result {
		if f.FailureModeAllow {
			return Result{Outcome: FailedOpen, Header: req.Header.Clone(), Host: req.Host, Path: req.Path, Err: err}
		}
		return Result{Outcome: Failed, Status: statusOnError, Err: err}
	}
	switch {
	case callErr != nil:
		return fail(fmt.Errorf("%w: %w", ErrCheck, callErr))
	case resp == nil:
		return fail(fmt.Errorf("%w: no response", ErrCheck))
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return allow(resp.GetOkResponse(), req, f, fail)
	}
	if er := resp.GetErrorResponse(); er != nil {
		return fail(fmt.Errorf("%w: status %d", ErrErrorResponse, er.GetStatus().GetCode()))
	}
	// Denied: 403 unless DeniedHttpResponse names another status.
	res := Result{Outcome: Denied, Status: http.StatusForbidden, Header: http.Header{}}
	if d := resp.GetDeniedResponse(); d != nil {
		if c := int(d.GetStatus().GetCode()); c > 0 {
			res.Status = c
		}
		for _, h := range d.GetHeaders() {
			k, v := h.GetHeader().GetKey(), headerValue(h.GetHeader())
			if f.ValidateMutations && !validHeader(k, v) {
				return fail(fmt.Errorf("%w: denied response header %q", ErrInvalidMutation, k))
			}
			// Local replies: append true adds a header line, else set.
			if h.GetAppend().GetValue() {
				res.Header.Add(k, v)
			} else {
				res.Header.Set(k, v)
			}
		}
		res.Body = d.GetBody()
	}
	return res
}

type mutation int

const (
	mutSet mutation = iota
	mutAdd
	mutAppend // comma-join onto an existing header; dropped when absent
	mutAddIfAbsent
	mutOverwriteIfExists
)

// action classifies one HeaderValueOption of OkHttpResponse.headers.
func action(h *corev3.HeaderValueOption, mode AppendMode) mutation {
	if h.GetAppend() != nil {
		if h.GetAppend().GetValue() {
			return mutAppend
		}
		return mutSet
	}
	if mode == AppendLegacy {
		return mutSet
	}
	switch h.GetAppendAction() {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		return mutAdd
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		return mutAddIfAbsent
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		return mutOverwriteIfExists
	}
	return mutSet
}

func allow(ok *authv3.OkHttpResponse, req Request, f *Filter, fail func(error) Result) Result {
	res := Result{Outcome: Allowed, Header: req.Header.Clone(), Host: req.Host, Path: req.Path}
	if res.Header == nil {
		res.Header = http.Header{}
	}
	if ok == nil {
		return res
	}
	// Legacy Envoy splits the list into headers to set and to append and
	// applies all sets first (Filter::onComplete); #42878 applies the list in
	// order. all is the pseudo-pass for the latter.
	const all = mutation(-1)
	passes := []mutation{mutSet, mutAppend}
	if f.AppendMode == AppendAction {
		passes = []mutation{all}
	}
	for _, pass := range passes {
		for _, h := range ok.GetHeaders() {
			act := action(h, f.AppendMode)
			if pass != all && act != pass {
				continue
			}
			k, v := h.GetHeader().GetKey(), headerValue(h.GetHeader())
			if f.ValidateMutations && !validHeader(k, v) {
				return fail(fmt.Errorf("%w: header %q", ErrInvalidMutation, k))
			}
			if strings.EqualFold(k, ":authority") || strings.EqualFold(k, "host") {
				if act != mutAppend && act != mutAddIfAbsent {
					res.Host = v
				}
				continue
			}
			if strings.HasPrefix(k, ":") {
				continue // other pseudo-headers are not modelled
			}
			ck := http.CanonicalHeaderKey(k)
			switch act {
			case mutSet:
				res.Header[ck] = []string{v}
			case mutAdd:
				res.Header[ck] = append(res.Header[ck], v)
			case mutAppend:
				if vs := res.Header[ck]; len(vs) > 0 {
					vs[0] += "," + v
				}
			case mutAddIfAbsent:
				if len(res.Header[ck]) == 0 {
					res.Header[ck] = []string{v}
				}
			case mutOverwriteIfExists:
				if len(res.Header[ck]) > 0 {
					res.Header[ck] = []string{v}
				}
			}
		}
	}
	for _, k := range ok.GetHeadersToRemove() {
		if f.ValidateMutations && !httpguts.ValidHeaderFieldName(k) {
			continue // an invalid name cannot be present: ignored
		}
		if strings.HasPrefix(k, ":") || strings.EqualFold(k, "host") {
			continue // isRemovableHeader
		}
		delete(res.Header, http.CanonicalHeaderKey(k))
	}
	if len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
		res.Path = mutateQuery(res.Path, ok.GetQueryParametersToSet(), ok.GetQueryParametersToRemove())
	}
	res.ResponseHeaders = ok.GetResponseHeadersToAdd()
	if f.ValidateMutations {
		for _, h := range res.ResponseHeaders {
			if !validHeader(h.GetHeader().GetKey(), headerValue(h.GetHeader())) {
				return fail(fmt.Errorf("%w: response header %q", ErrInvalidMutation, h.GetHeader().GetKey()))
			}
		}
	}
	kb := f.MaxRequestHeadersKB
	if kb == 0 {
		kb = 60
	}
	if headerBytes(res) > kb*1024 {
		return fail(ErrHeadersTooLarge)
	}
	return res
}

// headerValue is value, or raw_value when value is empty (the API allows both).
func headerValue(h *corev3.HeaderValue) string {
	if h.GetValue() == "" && len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

func validHeader(k, v string) bool {
	name := strings.TrimPrefix(k, ":")
	return name != "" && httpguts.ValidHeaderFieldName(name) && httpguts.ValidHeaderFieldValue(v)
}

// headerBytes is Envoy's HeaderMap::byteSize: keys and values, pseudo-headers included.
func headerBytes(r Result) int {
	n := len(":authority") + len(r.Host) + len(":path") + len(r.Path) + len(":method") + len(":scheme") + 10
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	return n
}

// mutateQuery applies query_parameters_to_set and _remove to path's query
// like Http::Utility::QueryParamsMulti: keys and values are raw (not
// decoded), a set replaces every value of its key, and the query is rebuilt
// with keys in sorted order (the map is ordered), values in arrival order.
func mutateQuery(path string, set []*corev3.QueryParameter, remove []string) string {
	base, query, _ := strings.Cut(path, "?")
	params := map[string][]string{}
	var keys []string
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if _, seen := params[k]; !seen {
			keys = append(keys, k)
		}
		params[k] = append(params[k], v)
	}
	for _, p := range set {
		if _, seen := params[p.GetKey()]; !seen {
			keys = append(keys, p.GetKey())
		}
		params[p.GetKey()] = []string{p.GetValue()}
	}
	for _, k := range remove {
		delete(params, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(base)
	first := true
	for _, k := range keys {
		for _, v := range params[k] {
			if first {
				b.WriteByte('?')
				first = false
			} else {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(v)
		}
	}
	return b.String()
}
