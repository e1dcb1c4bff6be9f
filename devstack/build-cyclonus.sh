#!/usr/bin/env bash
# Builds cyclonus, a NetworkPolicy simulator (github.com/mattfenwick/cyclonus), from the Go module
# proxy at the version pinned in versions.env, and caches it by version outside the repository.
# The isolation tests ask it whether the policies the service made allow each flow.
#
# Usage: devstack/build-cyclonus.sh        # prints the binary's path when done
# Env:   INSTANCE_SERVICE_CACHE (default ~/.cache/instance-service)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${INSTANCE_SERVICE_CACHE:-$HOME/.cache/instance-service}
bin="$cache/bin/cyclonus-$CYCLONUS_VERSION"
if [[ -f "$bin/.complete" ]]; then
  echo "$bin/cyclonus"
  exit 0
fi
command -v go >/dev/null || { echo "build-cyclonus: Go is required (https://go.dev)" >&2; exit 1; }
mkdir -p "$bin"
start=$(date +%s)
printf '[build-cyclonus %s] cyclonus %s: building\n' "$(date +%H:%M:%S)" "$CYCLONUS_VERSION" >&2
# Its go.mod has no replace directives: `go install module@version` builds it as published.
CGO_ENABLED=0 GOBIN="$bin" GOFLAGS=-mod=mod \
  go install -trimpath -ldflags "-s -w" "github.com/mattfenwick/cyclonus/cmd/cyclonus@$CYCLONUS_VERSION"
touch "$bin/.complete"
printf '[build-cyclonus %s] done in %d s\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - start ))" >&2
echo "$bin/cyclonus"
