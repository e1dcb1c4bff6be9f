#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, idempotently:
# Debian packages (RabbitMQ, PostgreSQL, Knot, openssl, python3-venv, npm), uv in a tools
# virtualenv, the project's locked virtualenv (.venv) and the AsyncAPI parser. The stack's Go
# commands (control plane, object storage, NetworkPolicy simulator, Prometheus, KEDA) are built
# from the Go module proxy by `devstack up` (or `devstack build`), cached by version.
# Afterwards everything runs from .venv/bin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

UV_VERSION=0.13.8
cache=${INSTANCE_SERVICE_CACHE:-$HOME/.cache/instance-service}
tools="$cache/tools"
say() { printf '[bootstrap %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

packages=()
command -v openssl >/dev/null || packages+=(openssl)
command -v setpriv >/dev/null || packages+=(util-linux)
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || packages+=(rabbitmq-server)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || packages+=(postgresql)
[[ -x /usr/sbin/knotd ]] || packages+=(knot)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
command -v npm >/dev/null || packages+=(nodejs npm)
if ((${#packages[@]})); then
  say "installing Debian packages: ${packages[*]}"
  # Debian starts a packaged service on install where an init system allows it; the stack runs
  # its own instances on these ports, so keep the packaged ones from starting.
  blocked=false
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    blocked=true
  fi
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
  if $blocked; then as_root rm -f /usr/sbin/policy-rc.d; fi
fi

# uv lives in a virtualenv of its own: Debian's python3 is externally managed (PEP 668).
if ! "$tools/bin/uv" --version 2>/dev/null | grep -q "uv $UV_VERSION"; then
  say "installing uv $UV_VERSION into $tools"
  python3 -m venv --clear "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
say "syncing .venv with uv.lock"
"$tools/bin/uv" sync --frozen --quiet

# The official AsyncAPI parser, which a test runs on docs/asyncapi.yaml.
if [[ ! -d tools/asyncapi-check/node_modules/@asyncapi/parser ]]; then
  say "installing the AsyncAPI parser (npm ci)"
  npm ci --prefix tools/asyncapi-check --silent --no-audit --no-fund
fi

command -v go >/dev/null || { say "Go is needed to build the local stack (1.26+)"; exit 1; }
