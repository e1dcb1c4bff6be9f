"""`python -m devstack up|down|status|env|build`: the local stack's command line."""

import argparse
import shlex
import sys
import time
from collections.abc import Sequence

from devstack import credentials, gobuild
from devstack.component import Component
from devstack.controlplane import BUILD as CONTROL_PLANE_BUILD
from devstack.controlplane import ControlPlane
from devstack.cyclonus import BUILD as CYCLONUS_BUILD
from devstack.dns import INGRESS_ADDRESS, INGRESS_HOSTNAME, KnotDns
from devstack.gobuild import GoBuild
from devstack.issuer import ISSUER_NAME
from devstack.keda import BUILD as KEDA_BUILD
from devstack.keda import Keda
from devstack.layout import LOOPBACK, Layout, default_layout
from devstack.postgres import Postgres
from devstack.processes import StackError, exclusive
from devstack.prometheus import BUILD as PROMETHEUS_BUILD
from devstack.prometheus import Prometheus
from devstack.rabbitmq import RabbitMQ
from devstack.seaweedfs import BUILD as SEAWEEDFS_BUILD
from devstack.seaweedfs import SeaweedFS
from telemetry.redaction import redact_url

BUILDS = (CONTROL_PLANE_BUILD, SEAWEEDFS_BUILD, CYCLONUS_BUILD, PROMETHEUS_BUILD, KEDA_BUILD)
"""Every Go build of the stack, in the order the tests need them (run last: KEDA's, Prometheus')."""
BACKGROUND = (PROMETHEUS_BUILD, KEDA_BUILD)
"""The builds `up` always leaves to the background: only their own tests need them."""


def components(layout: Layout) -> list[Component]:
    """The parts of the stack in start order."""
    secrets = credentials.load_or_create(layout)
    return [
        Postgres(layout, secrets),
        RabbitMQ(layout, secrets),
        SeaweedFS(layout, secrets),
        KnotDns(layout),
        ControlPlane(layout),
        Keda(layout),
        Prometheus(layout),
    ]


def _say(message: str) -> None:
    print(f"[devstack {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def up(layout: Layout, only: Sequence[str], defer: bool = False) -> int:
    """Start every (or the named) component; idempotent.

    Missing Go builds are made first, but KEDA's and Prometheus' (and with `defer`, all of
    them) are left to one low-priority chain in the background, and their components to a later
    `up` (named, or not deferring): the checks and tests that need none of them run meanwhile.
    """
    known = {c.name for c in components(layout)}
    if unknown := set(only) - known:
        raise StackError(f"unknown component(s) {sorted(unknown)}; choose from {sorted(known)}")
    later: list[GoBuild] = []
    if not only:
        later = [b for b in BUILDS if not b.cached() and (defer or b in BACKGROUND)]
        gobuild.start_in_background(later)
    waiting: set[str] = set()
    for component in components(layout):
        if only and component.name not in only:
            continue
        if missing := [b for b in component.builds if b in later]:
            _say(
                f"{component.name}: not built yet: building in the background at low priority "
                f"(log {missing[-1].log}); `python -m devstack up {component.name}` starts it "
                "once built"
            )
            waiting.add(component.name)
            continue
        started = time.monotonic()
        _say(f"{component.name}: starting")
        component.up()
        _say(f"{component.name}: ready in {time.monotonic() - started:.1f} s")
    return status(layout, waiting)


def down(layout: Layout) -> int:
    """Stop everything, last started first."""
    for component in reversed(components(layout)):
        _say(f"{component.name}: stopping")
        component.down()
    _say("stopped")
    return 0


def status(layout: Layout, waiting: set[str] | None = None) -> int:
    """Print each process's health and where to connect; exit 1 unless all are healthy (but
    the `waiting` components, whose build runs in the background)."""
    waiting = waiting or set()
    report = [(c.name, h) for c in components(layout) for h in c.health()]
    width = max(len(h.name) for _, h in report)
    failing = False
    for component, health in report:
        mark = "healthy  " if health.healthy else "UNHEALTHY"
        if not health.healthy and component in waiting:
            mark = "building "
        failing = failing or (not health.healthy and component not in waiting)
        print(f"{health.name:<{width}}  {mark}  {health.detail}")
    found = credentials.endpoints(layout, credentials.load_or_create(layout))
    print()
    print(f"kubeconfig:      {found.kubeconfig}")
    print(f"amqp url:        {redact_url(found.amqp_url)}")
    print(f"database url:    {redact_url(found.database_url)}")
    print(f"tenant admin db: {redact_url(found.postgres_admin_url)}")
    print(f"object storage:  {found.s3_url} buckets {found.backup_bucket}, {found.import_bucket}")
    print(f"prometheus:      {Prometheus(layout).url} (OTLP {Prometheus(layout).otlp_metrics_url})")
    print(f"state and logs:  {layout.home}")
    print("(passwords masked: `python -m devstack env` prints the full URLs as shell exports)")
    return 1 if failing else 0


def service_env(layout: Layout) -> dict[str, str]:
    """The variables that point the service and tools at the stack."""
    found = credentials.endpoints(layout, credentials.load_or_create(layout))
    return {
        "KUBECONFIG": found.kubeconfig,
        "INSTANCE_SERVICE_KUBERNETES__KUBECONFIG": found.kubeconfig,
        "INSTANCE_SERVICE_AMQP__URL": found.amqp_url,
        # The local cluster runs no containers: health checks follow EndpointSlices to the
        # stand-in that plays the Odoo pods.
        "INSTANCE_SERVICE_KUBERNETES__HEALTH_RESOLVER": "endpointslice",
        "INSTANCE_SERVICE_KUBERNETES__STANDIN_PORT": str(layout.ports.odoo_standin),
        # Tenant roles and databases are made through the admin role, on the stack's server.
        "INSTANCE_SERVICE_STORE__TENANT_ADMIN_URL": found.postgres_admin_url,
        "INSTANCE_SERVICE_TENANTS__DATABASE_HOST": "127.0.0.1",
        "INSTANCE_SERVICE_TENANTS__DATABASE_PORT": str(layout.ports.postgres),
        # Tenant pods' way to PostgreSQL (their NetworkPolicies): here every server is on loopback.
        "INSTANCE_SERVICE_TENANTS__DATABASE_ADDRESSES": '["127.0.0.1/32"]',
        # Backups go to the stack's object storage, sealed with the stack's own keyset.
        "INSTANCE_SERVICE_BACKUPS__ENDPOINT_URL": found.s3_url,
        "INSTANCE_SERVICE_BACKUPS__BUCKET": found.backup_bucket,
        "INSTANCE_SERVICE_BACKUPS__IMPORT_BUCKET": found.import_bucket,
        "INSTANCE_SERVICE_BACKUPS__ACCESS_KEY_ID": found.s3_admin_key_id,
        "INSTANCE_SERVICE_BACKUPS__SECRET_ACCESS_KEY": found.s3_admin_secret,
        "INSTANCE_SERVICE_BACKUPS__KEYSET": found.backup_keyset,
        # The data Jobs' way to it (their NetworkPolicy): loopback, its S3 port.
        "INSTANCE_SERVICE_TENANTS__BACKUP_STORAGE_ADDRESSES": '["127.0.0.1/32"]',
        "INSTANCE_SERVICE_TENANTS__BACKUP_STORAGE_PORTS": f"[{layout.ports.s3}]",
        # Customers' domains: checked through the stack's DNS server, against its ingress name
        # and address; certificates from the stand-in issuer (devstack/issuer.py).
        "INSTANCE_SERVICE_DOMAINS__RESOLVER_ADDRESS": LOOPBACK,
        "INSTANCE_SERVICE_DOMAINS__RESOLVER_PORT": str(layout.ports.dns),
        "INSTANCE_SERVICE_DOMAINS__INGRESS_HOSTNAME": INGRESS_HOSTNAME,
        "INSTANCE_SERVICE_DOMAINS__INGRESS_ADDRESSES": f'["{INGRESS_ADDRESS}"]',
        "INSTANCE_SERVICE_DOMAINS__ISSUER_NAME": ISSUER_NAME,
        "DEVSTACK_DATABASE_URL": found.database_url,
        "DEVSTACK_POSTGRES_ADMIN_URL": found.postgres_admin_url,
        "DEVSTACK_PROMETHEUS_URL": Prometheus(layout).url,
    }


def env(layout: Layout) -> int:
    """Print shell exports that point the service and tools at the stack."""
    for key, value in service_env(layout).items():
        print(f"export {key}={shlex.quote(value)}")
    print("# metrics to the stack's Prometheus (every second; the SDK's default is a minute):")
    print(f"# export OTEL_EXPORTER_OTLP_METRICS_ENDPOINT={Prometheus(layout).otlp_metrics_url}")
    print("# export OTEL_METRIC_EXPORT_INTERVAL=1000")
    print("# state on PostgreSQL instead of SQLite:")
    print('# export INSTANCE_SERVICE_STORE__URL="$DEVSTACK_DATABASE_URL"')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = commands.add_parser("up", help="start the stack (idempotent) and print its status")
    start.add_argument(
        "--defer",
        action="store_true",
        help="start only what is built; build the rest in the background (what CI does)",
    )
    start.add_argument(
        "only",
        nargs="*",
        metavar="COMPONENT",
        help="only these: postgres, rabbitmq, objectstore, dns, kubernetes, keda, prometheus",
    )
    commands.add_parser("down", help="stop every process of the stack; data is kept")
    commands.add_parser("status", help="print each component's health and the URLs to use")
    commands.add_parser("env", help="print shell exports with the full URLs and kubeconfig")
    commands.add_parser(
        "build", help="build (or find cached) every Go command of the stack, now, in order"
    )
    arguments = parser.parse_args(argv)
    layout = default_layout()
    try:
        if arguments.command == "up":
            with exclusive(layout):
                return up(layout, arguments.only, arguments.defer)
        if arguments.command == "down":
            with exclusive(layout):
                return down(layout)
        if arguments.command == "status":
            return status(layout)
        if arguments.command == "env":
            return env(layout)
        for build in BUILDS:
            print(build.build())
        return 0
    except (StackError, credentials.CredentialsError) as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
