#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, idempotently:
# Debian packages (RabbitMQ, PostgreSQL, openssl), uv and the locked virtualenv (.venv),
# and the control-plane binaries (built from the Go module proxy, cached by version).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

UV_VERSION=0.13.8
say() { printf '[bootstrap %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

packages=()
command -v openssl >/dev/null || packages+=(openssl)
command -v setpriv >/dev/null || packages+=(util-linux)
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || packages+=(rabbitmq-server)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || packages+=(postgresql)
if ((${#packages[@]})); then
  say "installing Debian packages: ${packages[*]}"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
fi

if ! python3 -m uv --version 2>/dev/null | grep -q "uv $UV_VERSION"; then
  say "installing uv $UV_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
say "syncing .venv with uv.lock"
python3 -m uv sync --frozen --quiet

command -v go >/dev/null || { say "Go is needed to build the control plane (1.26+)"; exit 1; }
say "control-plane binaries: $(bash devstack/build-binaries.sh)"
