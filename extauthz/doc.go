// Package extauthz holds the plain types that flow along tokentailor's request path
// and the sentinel errors that name every reason for a denial.
//
// The path of a request is:
//
//	CheckRequest → Request → Credential → Principal → Decision → Token → CheckResponse
//
// Only extauthz/server and extauthz/response know Envoy's protos; every stage in
// between works on the types declared here, so it can be tested without a server.
// This package imports none of its children.
package extauthz
