#!/usr/bin/env bash
# build-hydra.sh builds Ory Hydra v2 (a real OAuth 2.0 authorization server that
# nobody on this project wrote) into a cache directory outside the repository, so
# extauthz/server's TestHydra* tests can prove tokentailor against it: JWT and
# opaque access tokens, RFC 7662 introspection, revocation, discovery and JWKS.
#
# Hydra is built from the Go module proxy in a throw-away helper module (generated
# here in a temp dir, so the repository carries no second go.mod), with:
#   - `go get -tool github.com/ory/hydra/v2@$HYDRA_VERSION`;
#   - the replace line of Hydra's own go.mod that a dependent module must repeat
#     (github.com/gobuffalo/pop/v6 => github.com/ory/pop/v6 at Hydra's pin; its
#     other replace, the generated API client in ./internal/httpclient, falls back
#     to the published github.com/ory/hydra-client-go/v2 that go.mod requires);
#   - build tags `sqlite,sqlite_omit_load_extension` (as Hydra's Makefile and
#     Dockerfile use) and cgo, so `DSN=memory` gives an in-memory SQLite store and
#     no database server is needed.
#
# Usage:   bash .ci/build-hydra.sh            # prints the binary path last
# Then:    TOKENTAILOR_HYDRA_BIN=<path> go test -count=1 -run Hydra ./extauthz/server/
#          (the test also finds the binary in the default cache dir by itself)
#
# Env:
#   TOKENTAILOR_HYDRA_DIR  cache dir (default $HOME/.cache/tokentailor/hydra)
#   HYDRA_VERSION          Hydra release to build (default v2.3.0)
#
# Runs under `nice -n 19`. Later runs return at once (a stamp file records the
# version built).
set -euo pipefail

HYDRA_VERSION=${HYDRA_VERSION:-v2.3.0}
DIR=${TOKENTAILOR_HYDRA_DIR:-${HOME}/.cache/tokentailor/hydra}
BIN="${DIR}/hydra"
STAMP="${DIR}/.hydra-version"

log() { printf 'build-hydra: %s\n' "$*" >&2; }

mkdir -p "${DIR}"

if [[ -x "${BIN}" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${HYDRA_VERSION}" ]]; then
  log "hydra ${HYDRA_VERSION} already built: ${BIN}"
  echo "${BIN}"
  exit 0
fi

if ! command -v gcc >/dev/null 2>&1; then
  if [[ "$(id -u)" -ne 0 ]]; then
    log "gcc not found and not root: SQLite (cgo) needs a C compiler (apt-get install -y gcc)"
    exit 1
  fi
  log "installing Debian's gcc (SQLite is built with cgo)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends gcc libc6-dev >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends gcc libc6-dev >&2; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tokentailor-hydra.XXXXXX")
trap 'rm -rf "${work}"' EXIT
cd "${work}"

# Never inherit the repository's toolchain settings or workspace.
export GOWORK=off GOFLAGS=-mod=mod

log "generating helper module in ${work} for github.com/ory/hydra/v2 ${HYDRA_VERSION}"
go mod init tokentailor.local/hydra-bin >/dev/null 2>&1

# Repeat Hydra's module-to-module replaces (replaces pointing into its own tree
# are skipped: those directories are not in the module zip).
gomod=$(go mod download -json "github.com/ory/hydra/v2@${HYDRA_VERSION}" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
if [[ -z "${gomod}" || ! -f "${gomod}" ]]; then
  log "could not download go.mod of github.com/ory/hydra/v2 ${HYDRA_VERSION}"
  exit 1
fi
while read -r from to ver; do
  [[ -n "${from}" && -n "${ver}" ]] || continue
  go mod edit -replace "${from}=${to}@${ver}"
  log "replace ${from} => ${to} ${ver}"
done < <(sed -n 's#^replace[[:space:]]\{1,\}\([^[:space:]]\{1,\}\)[[:space:]]*=>[[:space:]]*\([^./[:space:]][^[:space:]]*\)[[:space:]]\{1,\}\(v[^[:space:]]\{1,\}\)[[:space:]]*$#\1 \2 \3#p' "${gomod}")

nice -n 19 go get -tool "github.com/ory/hydra/v2@${HYDRA_VERSION}" >&2

log "building hydra ${HYDRA_VERSION} (cgo + sqlite; slow the first time)"
start=$(date +%s)
CGO_ENABLED=1 nice -n 19 go build -trimpath \
  -tags sqlite,sqlite_omit_load_extension \
  -ldflags "-s -w -X github.com/ory/hydra/v2/driver/config.Version=${HYDRA_VERSION}" \
  -o "${BIN}.tmp" github.com/ory/hydra/v2
mv "${BIN}.tmp" "${BIN}"
echo "${HYDRA_VERSION}" >"${STAMP}"
log "hydra ${HYDRA_VERSION} built in $(($(date +%s) - start))s: ${BIN} ($(du -h "${BIN}" | cut -f1))"
echo "${BIN}"
