#!/usr/bin/env bash
# build-envtest.sh builds the binaries that controller-runtime's envtest needs
# (kube-apiserver and etcd) into a cache directory outside the repository, so the
# webhook test in k8s/ can run against a real API server. The usual
# `setup-envtest` download cannot work on machines that only reach the Go module
# proxy and Debian's archive, so:
#   - kube-apiserver is built from k8s.io/kubernetes at $K8S_VERSION in a
#     throw-away helper module (generated here in a temp dir, so the repository
#     carries no second go.mod), with a replace line pinning every staging module
#     (k8s.io/api, k8s.io/apiserver, ...) to the matching v0.x release;
#   - etcd comes from Debian's etcd-server package (/usr/bin/etcd).
#
# Usage:   bash .ci/build-envtest.sh          # prints the asset directory last
# Then:    KUBEBUILDER_ASSETS=<dir> go test ./k8s/...
#
# Env:
#   TOKENTAILOR_ENVTEST_DIR  asset dir (default $HOME/.cache/tokentailor/envtest)
#   K8S_VERSION              Kubernetes release to build (default 1.37.2)
#
# The first build takes ~14 minutes and ~3 GB of Go build cache on 2 cores; it
# runs under `nice -n 19`. Later runs return at once (a stamp file records the
# version built).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
STAGING_VERSION="0.${K8S_VERSION#1.}"
DIR=${TOKENTAILOR_ENVTEST_DIR:-${HOME}/.cache/tokentailor/envtest}
STAMP="${DIR}/.kube-apiserver-version"

log() { printf 'build-envtest: %s\n' "$*" >&2; }

mkdir -p "${DIR}"

# --- etcd -----------------------------------------------------------------
if [[ ! -x "${DIR}/etcd" ]]; then
  if ! command -v etcd >/dev/null 2>&1 && [[ ! -x /usr/bin/etcd ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
      log "etcd not found and not root: install Debian's etcd-server (apt-get install -y etcd-server)"
      exit 1
    fi
    log "installing Debian's etcd-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends etcd-server >&2 ||
      { apt-get update >&2 && apt-get install -y --no-install-recommends etcd-server >&2; }
    # The package may start a system etcd on 2379; envtest picks its own free
    # ports, but don't leave a stray daemon running in CI.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop etcd >/dev/null 2>&1 || true; fi
  fi
  etcd_bin=$(command -v etcd || echo /usr/bin/etcd)
  ln -sf "${etcd_bin}" "${DIR}/etcd"
  log "etcd: ${DIR}/etcd -> ${etcd_bin}"
fi

# --- kube-apiserver ---------------------------------------------------------
if [[ -x "${DIR}/kube-apiserver" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${K8S_VERSION}" ]]; then
  log "kube-apiserver v${K8S_VERSION} already built in ${DIR}"
  echo "${DIR}"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tokentailor-envtest.XXXXXX")
trap 'rm -rf "${work}"' EXIT
cd "${work}"

# Never inherit the repository's toolchain settings or workspace.
export GOWORK=off GOFLAGS=-mod=mod

log "generating helper module in ${work} for k8s.io/kubernetes v${K8S_VERSION}"
go mod init tokentailor.local/envtest-bin >/dev/null 2>&1

# The staging modules are exactly the `=> ./staging/src/...` replaces of
# k8s.io/kubernetes' own go.mod: read them from there rather than keeping a list.
gomod=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
if [[ -z "${gomod}" || ! -f "${gomod}" ]]; then
  log "could not download go.mod of k8s.io/kubernetes v${K8S_VERSION}"
  exit 1
fi
staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "${gomod}" | sort -u)
if [[ -z "${staging}" ]]; then
  log "no staging replaces found in ${gomod}"
  exit 1
fi
for m in ${staging}; do
  go mod edit -replace "${m}=${m}@v${STAGING_VERSION}"
done
log "pinned $(wc -w <<<"${staging}") staging modules to v${STAGING_VERSION}"

nice -n 19 go get "k8s.io/kubernetes/cmd/kube-apiserver@v${K8S_VERSION}" >&2

ldflags="-s -w"
ldflags+=" -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION}"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
minor=${K8S_VERSION#1.}; minor=${minor%%.*}
ldflags+=" -X k8s.io/component-base/version.gitMinor=${minor}"

log "building kube-apiserver (slow the first time: ~14 min, ~3 GB build cache)"
CGO_ENABLED=0 nice -n 19 go build -trimpath -ldflags "${ldflags}" \
  -o "${DIR}/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "${DIR}/kube-apiserver.tmp" "${DIR}/kube-apiserver"
echo "${K8S_VERSION}" >"${STAMP}"
log "kube-apiserver v${K8S_VERSION}: ${DIR}/kube-apiserver"
echo "${DIR}"
