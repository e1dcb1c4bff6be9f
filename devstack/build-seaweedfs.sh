#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (github.com/seaweedfs/seaweedfs, Apache-2.0), the local stack's
# S3-compatible object storage, from the Go module proxy at the version pinned in versions.env,
# and caches it by version outside the repository.
#
# Its go.mod has a replace directive, which `go install module@version` refuses: the module is
# downloaded, copied to a writable directory and built there, as the control plane is.
#
# Usage: devstack/build-seaweedfs.sh        # prints the binary's path when done
# Env:   INSTANCE_SERVICE_CACHE (default ~/.cache/instance-service)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${INSTANCE_SERVICE_CACHE:-$HOME/.cache/instance-service}
bin="$cache/bin/seaweedfs-$SEAWEEDFS_VERSION"
if [[ -f "$bin/.complete" ]]; then
  echo "$bin/weed"
  exit 0
fi
command -v go >/dev/null || { echo "build-seaweedfs: Go is required (https://go.dev)" >&2; exit 1; }
say() { printf '[build-seaweedfs %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$bin"
start=$(date +%s)
say "seaweedfs $SEAWEEDFS_VERSION: downloading"
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
go mod init build-seaweedfs >/dev/null 2>&1
dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" |
  sed -n 's/.*"Dir": "\(.*\)",/\1/p')
[[ -n "$dir" ]] || { say "the Go module proxy did not serve seaweedfs $SEAWEEDFS_VERSION"; exit 1; }
cp -r "$dir" src
chmod -R u+w src
cd src
say "building weed (about 6 minutes on 2 cores)"
go build -trimpath -ldflags "-s -w" -o "$bin/weed" ./weed
touch "$bin/.complete"
say "done in $(( $(date +%s) - start )) s"
echo "$bin/weed"
