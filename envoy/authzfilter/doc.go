// Package authzfilter is a Go model of Envoy's HTTP ext_authz filter acting as
// a gRPC client of an authorization service, for tests, the `tokentailor
// request` command and load generators, on machines where no Envoy runs.
//
// It is written from Envoy's documented v3 API (go-control-plane envoy
// v1.40.0) and from Envoy's source, and says where each rule comes from:
//
//   - BuildCheckRequest follows
//     source/extensions/filters/common/ext_authz/check_request_utils.cc
//     (CheckRequestUtils::setHttpRequest): method, path (with the query),
//     host (:authority) and scheme are copied from the pseudo-headers; every
//     header goes into a map with lower-case keys, pseudo-headers included,
//     and a header seen twice is merged as value1 + "," + value2 (no space);
//     with encode_raw_headers the filter fills header_map instead, one entry
//     per header line, unmerged, and leaves headers empty. A client-sent
//     x-envoy-auth-partial-body is skipped. disallowed_headers wins over
//     allowed_headers; a non-empty allowed_headers list always lets
//     authorization, :method, :path and :authority through
//     (CheckRequestUtils::toRequestMatchers). Context extensions are the
//     route's merged ExtAuthzPerRoute.check_settings.context_extensions
//     (FilterConfigPerRoute::merge in ext_authz.cc: the more specific config
//     wins per key).
//   - Apply follows GrpcClientImpl::onSuccess / onFailure in
//     source/extensions/filters/common/ext_authz/ext_authz_grpc_impl.cc and
//     Filter::onComplete in source/extensions/filters/http/ext_authz/ext_authz.cc:
//     status OK allows; a non-OK status with error_response, a gRPC error,
//     a timeout or no answer is an error (failure_mode_allow lets the request
//     through unchanged, else status_on_error, default 403); any other non-OK
//     status denies with DeniedHttpResponse's status (403 when unset), headers
//     and body. On allow the filter applies, in this order (Filter::onComplete):
//     headers to set, headers to add, headers to append (appended to an
//     existing header as "," + value, dropped when the header is absent),
//     then headers_to_remove (":"-prefixed names and host are never removed),
//     then query_parameters_to_set (each overwrites every value of its key)
//     and query_parameters_to_remove, and finally refuses the request with
//     status_on_error when the headers exceed max_request_headers_kb. So a
//     header both set and removed in one answer ends up removed. With
//     validate_mutations an invalid header name or value refuses the
//     request with status_on_error.
//
// # Header append semantics
//
// Which field of HeaderValueOption decides between overwrite and append
// changed across releases; AppendMode selects the model:
//
//   - AppendLegacy (the default) models Envoy up to 1.36 and the releases
//     carrying envoyproxy/envoy#43442, which reverted #42878: only the
//     deprecated BoolValue append is read; true appends, unset or false
//     overwrites; append_action is ignored.
//   - AppendAction models Envoy 1.37.0 (#42878, bug #43310): append, when
//     set, decides as above; otherwise append_action does, and its zero
//     value APPEND_IF_EXISTS_OR_ADD adds a second header line, so an unset
//     header is sent twice. ADD_IF_ABSENT, OVERWRITE_IF_EXISTS and
//     OVERWRITE_IF_EXISTS_OR_ADD do what they say; an unknown action
//     overwrites.
//
// A server that sets append_action OVERWRITE_IF_EXISTS_OR_ADD and leaves
// append unset gets an overwrite from both.
//
// # Routing
//
// Settings reads a bootstrap (parsed by envoy/validate): the named
// listener's http_connection_manager, its ext_authz filter (timeout,
// status_on_error, failure_mode_allow, encode_raw_headers,
// allowed/disallowed headers, validate_mutations) and its static
// route_config. A request picks a virtual host by domain (exact, then the
// longest "*.suffix", then the longest "prefix*", then "*"), then the first
// route whose match fits: prefix, path, path_separated_prefix or safe_regex
// on the path without the query, case_sensitive, and header matchers
// (string_match, present_match, exact/prefix/suffix/contains, safe_regex as a
// full match, invert_match). The HCM's normalize_path (RFC 3986 dot segments)
// and merge_slashes are applied first.
//
// # Not modelled
//
// HTTP (not gRPC) authorization services, with_request_body, TLS (source
// principal and certificate), metadata_context and dynamic metadata,
// header mutation rules (decoder_header_mutation_rules), clear_route_cache
// (the route is chosen once, before the check), filter_enabled and
// deny_at_disable, RDS/xDS, weighted clusters, retries,
// path_with_escaped_slashes_action, x-envoy-* header
// sanitising beyond the few headers Proxy sets (x-forwarded-proto,
// x-forwarded-for, x-request-id), and HTTP/2 specifics.
package authzfilter
