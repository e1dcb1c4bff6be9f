"""odoo.conf for a tenant: hardened, and sized from the plan.

Sizing follows Odoo's rule of thumb: workers = 2 x CPU + 1, about 325 MiB per worker, at least
one worker (so the gevent port 8072 serves `/websocket`), and per-worker memory limits that
share what the plan grants among the workers and the cron worker.
"""

import hashlib
from dataclasses import dataclass

from k8s.settings import TenantSettings
from k8s.spec import InstanceSpec, TenantCredentials

MIB = 1024 * 1024
WORKER_MIB = 325
BASE_MIB = 256  # the main process and cron thread, beside the workers


@dataclass(frozen=True)
class Sizing:
    """How the plan becomes Odoo processes and limits."""

    workers: int
    limit_memory_soft: int
    limit_memory_hard: int


def sizing(spec: InstanceSpec) -> Sizing:
    """Workers and per-worker memory limits that fit the plan's memory.

    Odoo runs the workers, a cron worker and the gevent process; the memory left after the base
    is shared by the workers and the cron worker, so all of them fit the container's limit.
    """
    by_cpu = (2 * spec.cpu_millicores) // 1000 + 1
    by_memory = max(1, (spec.memory_mib - BASE_MIB) // WORKER_MIB)
    workers = max(1, min(by_cpu, by_memory))  # one worker already starts the gevent process
    hard = (spec.memory_mib - BASE_MIB) * MIB // (workers + 1)
    return Sizing(workers=workers, limit_memory_soft=hard * 4 // 5, limit_memory_hard=hard)


def render_odoo_conf(
    spec: InstanceSpec, credentials: TenantCredentials, tenants: TenantSettings
) -> str:
    """The odoo.conf text; it holds passwords, so it lives only in the Secret."""
    names = spec.names
    size = sizing(spec)
    lines = [
        "[options]",
        f"db_host = {tenants.database_host}",
        f"db_port = {tenants.database_port}",
        f"db_user = {names.role}",
        f"db_password = {credentials.database_password}",
        f"db_name = {names.database}",
        f"dbfilter = ^{names.database}$",
        "list_db = False",
        f"admin_passwd = {credentials.master_password}",
        "proxy_mode = True",
        "data_dir = /var/lib/odoo",
        f"workers = {size.workers}",
        "max_cron_threads = 1",
        f"limit_memory_soft = {size.limit_memory_soft}",
        f"limit_memory_hard = {size.limit_memory_hard}",
        "http_port = 8069",
        "gevent_port = 8072",
    ]
    return "\n".join(lines) + "\n"


def config_fingerprint(spec: InstanceSpec, tenants: TenantSettings) -> str:
    """A digest of odoo.conf without its secrets: it changes exactly when the rendered file's
    other lines change. The Deployment's pod template carries it, so a changed conf (mounted
    with subPath, which never refreshes) rolls the pod."""
    placeholder = TenantCredentials("-", "-", "-")
    rendered = render_odoo_conf(spec, placeholder, tenants)
    return hashlib.sha256(rendered.encode()).hexdigest()[:16]
