#!/usr/bin/env bash
# Builds commands of a Go module from the Go module proxy at a pinned version and caches them by
# version outside the repository; prints the directory that holds them.
#
# Modules whose go.mod has replace directives are refused by `go install module@version`, so the
# module is downloaded, copied to a writable directory and built there with its own go.sum, as
# the control plane is (devstack/build-binaries.sh).
#
# Usage: devstack/build-module.sh NAME MODULE VERSION OUTPUT=PACKAGE...
#   e.g. devstack/build-module.sh prometheus github.com/prometheus/prometheus v0.316.0 \
#          prometheus=./cmd/prometheus promtool=./cmd/promtool
# Env:   INSTANCE_SERVICE_CACHE (default ~/.cache/instance-service), BUILD_TAGS (go build -tags)
set -euo pipefail

name=$1 module=$2 version=$3
shift 3
cache=${INSTANCE_SERVICE_CACHE:-$HOME/.cache/instance-service}
bin="$cache/bin/$name-$version"
if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi
say() { printf '[build-%s %s] %s\n' "$name" "$(date +%H:%M:%S)" "$*" >&2; }
command -v go >/dev/null || { say "Go is required (https://go.dev)"; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
mkdir -p "$bin"
# One build at a time per module and version: a second caller (a test, while `devstack up` builds in
# the background) waits for the first and takes its result.
exec 9>"$bin.lock"
if ! flock -n 9; then
  say "another build of $name $version is running: waiting for it"
  flock 9
fi
if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi
start=$(date +%s)
say "$module $version: downloading"
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
go mod init "build-$name" >/dev/null 2>&1
dir=$(go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
[[ -n "$dir" ]] || { say "the Go module proxy did not serve $module $version"; exit 1; }
cp -r "$dir" src
chmod -R u+w src
cd src
for target in "$@"; do
  output=${target%%=*} package=${target#*=}
  say "building $output ($package)"
  go build -trimpath -tags "${BUILD_TAGS:-}" -ldflags "-s -w" -o "$bin/$output" "$package"
done
touch "$bin/.complete"
say "done in $(( $(date +%s) - start )) s"
echo "$bin"
