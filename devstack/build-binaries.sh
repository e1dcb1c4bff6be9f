#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, etcd, kwok) from the Go module proxy at the versions pinned in versions.env, and
# caches them by version outside the repository. Nothing prebuilt is downloaded.
#
# Usage: devstack/build-binaries.sh        # prints the bin directory when done
# Env:   INSTANCE_SERVICE_CACHE (default ~/.cache/instance-service)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${INSTANCE_SERVICE_CACHE:-$HOME/.cache/instance-service}
bin="$cache/bin/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
stamp="$bin/.complete"
if [[ -f "$stamp" ]]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build-binaries: Go is required (https://go.dev) to build the control plane" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$bin"
# One build at a time (as devstack/build-module.sh): a second caller waits and takes its result.
exec 9>"$bin.lock"
if ! flock -n 9; then
  echo "build-binaries: another build of the control plane is running: waiting for it" >&2
  flock 9
fi
if [[ -f "$stamp" ]]; then
  echo "$bin"
  exit 0
fi
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log() { printf '[build-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

build_kubernetes() {
  local mod="$work/kubernetes" minor staging_version
  mkdir -p "$mod"
  log "kubernetes $KUBERNETES_VERSION: resolving the staging modules"
  local gomod
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  # k8s.io/kubernetes replaces its staging modules with ./staging paths, which `go build` of a
  # dependency cannot follow; the published staging modules carry the matching v0.X.Y tags.
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
  {
    echo "module local/controlplane"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    sed -n 's|^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\t\1 => \1 '"$staging_version"'|p' "$gomod"
    echo ")"
  } >"$mod/go.mod"
  local ldflags="-s -w"
  local v=k8s.io/component-base/version
  ldflags+=" -X $v.gitVersion=$KUBERNETES_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
  ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  log "kubernetes $KUBERNETES_VERSION: building kube-apiserver kube-controller-manager kube-scheduler kubectl (slow on a cold cache)"
  (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
  local mod="$work/etcd"
  mkdir -p "$mod"
  log "etcd $ETCD_VERSION: building"
  printf 'module local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$mod/go.mod"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  log "kwok $KWOK_VERSION: building"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

start=$(date +%s)
build_etcd
build_kwok
build_kubernetes
touch "$stamp"
log "done in $(( $(date +%s) - start )) s: $bin"
echo "$bin"
