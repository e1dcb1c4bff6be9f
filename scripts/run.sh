#!/usr/bin/env bash
# Sets up a machine, starts the local stack, and runs the consumer against it.
# The service's own state goes to an embedded SQLite file (./instance-service.db) unless
# INSTANCE_SERVICE_STORE__URL says otherwise. Stop it with Ctrl-C;
# `.venv/bin/python -m devstack down` stops the stack.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/bootstrap.sh
.venv/bin/python -m devstack up
eval "$(.venv/bin/python -m devstack env)"
# Probes on loopback for a local run (in a cluster the default 0.0.0.0 lets the kubelet in).
export INSTANCE_SERVICE_CONSUMER__HEALTH_HOST=${INSTANCE_SERVICE_CONSUMER__HEALTH_HOST:-127.0.0.1}
exec .venv/bin/instance-service consume
