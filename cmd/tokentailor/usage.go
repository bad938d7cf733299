package main

// usage is the help text of the command line.
const usage = `tokentailor: Envoy ext_authz server that mints narrowed internal tokens

Usage:
  tokentailor serve -config FILE          run the ext_authz gRPC server and admin listener
  tokentailor check-config FILE           validate a config (and load its keys); non-zero exit on error
  tokentailor dev                         run on an embedded config with a built-in development issuer
  tokentailor explain -config FILE ...    show the decision for a token and a request, without Envoy
  tokentailor request -addr ADDR ...      send one Check to a running tokentailor, as Envoy would
  tokentailor inject-webhook ...          run the Kubernetes sidecar injection webhook
  tokentailor version                     print the version

Run "tokentailor COMMAND -h" for a command's flags.
`
