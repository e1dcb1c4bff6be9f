"""Fleet reconciliation at 100, 250 and 1,000 instances on the local stack: API requests and wall
time, showing that requests do not grow with the fleet (one list per kind) except for repairs.
Needs the local stack (`python -m devstack up`).

    .venv/bin/python -m bench.reconcile [--sizes 100,250,1000] [--broken 10]

Instances are seeded straight into a SQLite store and a fresh namespace (their Secret, Service,
NetworkPolicy, Ingress, volume claim and a Deployment at 0 replicas, as the handlers build
them; the claims name a StorageClass that does not exist, so nothing is provisioned). For each
size: a reconcile of the fleet in line, then one after deleting the Service of `--broken`
instances by hand. The namespace is deleted at the end.
"""

import argparse
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from kubernetes import client
from pydantic import SecretStr
from sqlalchemy.orm import Session

from bench.stack import Tenants, tenant_namespace
from devstack.layout import default_layout
from devstack.seaweedfs import backup_settings
from handlers.catalog import command_catalog
from handlers.platform import Platform
from handlers.reconcile import carry_out, observe, plan
from handlers.specs import instance_spec
from k8s.apply import Kubernetes
from k8s.credentials import generate_credentials
from k8s.exposure import build_ingress, build_service
from k8s.health import SystemResolver
from k8s.kinds import kind_named
from k8s.network import build_network_policies
from k8s.settings import KubernetesSettings, TenantSettings
from k8s.workload import build_deployment, build_secret, build_volume
from objectstore.backups import ObjectBackups
from store.database import create_engine
from store.instances import instance_record
from store.ledger import Ledger
from store.lifecycle import InstanceStatus
from store.migrate import upgrade
from store.models import Instance
from store.settings import StoreSettings

SEED_THREADS = 8


def _seed(ledger: Ledger, platform: Platform, api: client.ApiClient, count: int) -> None:
    """`count` more stopped instances, in the store and as objects."""
    rows = []
    now = datetime.now(UTC)
    for _ in range(count):
        instance_id = str(uuid.uuid4())
        rows.append(
            Instance(
                id=instance_id,
                customer_id="bench",
                subdomain=f"b-{instance_id[:18]}",
                odoo_version="17.0",
                cpu_millicores=500,
                memory_mib=1024,
                storage_gib=5,
                status=InstanceStatus.STOPPED,
                spec={},
                last_command_time=now,
                last_command_id=f"bench-{instance_id}",
                kubernetes_names={},
            )
        )
    with Session(ledger.engine, expire_on_commit=False) as session, session.begin():
        session.add_all(rows)
    namespace, tenants = platform.namespace, platform.tenants

    def objects(row: Instance) -> None:
        spec = instance_spec(instance_record(row))
        cluster = Kubernetes(api, namespace)
        for manifest in (
            build_secret(spec, generate_credentials(), tenants, namespace),
            build_service(spec, namespace),
            *build_network_policies(spec, tenants, namespace),
            build_ingress(spec, tenants, namespace),
            build_volume(spec, tenants, namespace),
            build_deployment(spec, tenants, namespace, replicas=0),
        ):
            cluster.apply(kind_named(manifest["kind"]), manifest)

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(objects, rows))


def _reconcile(ledger: Ledger, platform: Platform, api: client.ApiClient) -> dict[str, Any]:
    cluster = Kubernetes(api, platform.namespace)
    started = time.perf_counter()
    observed = observe(cluster)
    found = plan(ledger.instances(), observed, platform)
    planned = time.perf_counter() - started
    lists = sum(cluster.requests.values())
    outcome = carry_out(found, cluster, ledger, platform, remove_orphans=False)
    total = time.perf_counter() - started
    return {
        "checked": found.checked,
        "lists": lists,
        "repairs": outcome.repairs_made,
        "requests": sum(cluster.requests.values()),
        "plan_s": planned,
        "total_s": total,
    }


def run(sizes: list[int], broken: int, out: TextIO = sys.stdout) -> list[dict[str, Any]]:
    """Seed, reconcile, break, reconcile at each size; a row per reconcile (also printed)."""
    with tenant_namespace("bench-reconcile") as tenants:
        return _run(sizes, broken, tenants, out)


def _run(sizes: list[int], broken: int, tenants: Tenants, out: TextIO) -> list[dict[str, Any]]:
    api, namespace = tenants.api, tenants.namespace
    core = client.CoreV1Api(api)
    platform = Platform(
        cluster=lambda: Kubernetes(api, namespace),
        databases=tenants.databases,
        resolver=SystemResolver(),  # no health check: claims are never bound, pods never run
        kubernetes=KubernetesSettings(namespace=namespace),
        tenants=TenantSettings(base_domain="bench.test", storage_class="bench-unbound"),
        backups=ObjectBackups.connect(backup_settings(default_layout())),
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as state:
        engine = create_engine(StoreSettings(url=SecretStr(f"sqlite:///{Path(state) / 's.db'}")))
        upgrade(engine)
        ledger = Ledger(engine, command_catalog().status_machine)
        print(
            f"fleet reconcile in namespace {namespace}; requests counted per reconcile",
            file=out,
        )
        print(
            f"{'instances':>9} {'state':<18} {'lists':>5} {'repairs':>7} {'requests':>8} "
            f"{'plan s':>7} {'total s':>7}",
            file=out,
        )
        seeded = 0
        for size in sizes:
            started = time.perf_counter()
            _seed(ledger, platform, api, size - seeded)
            seeded = size
            print(f"  (seeded to {size} in {time.perf_counter() - started:.0f} s)", file=out)
            row = {"instances": size, "state": "in line", **_reconcile(ledger, platform, api)}
            rows.append(row)
            _print(row, out)
            for instance in ledger.instances()[:broken]:
                name = instance_spec(instance).names.base
                core.delete_namespaced_service(name, namespace)
            state_name = f"{broken} Services gone"
            row = {"instances": size, "state": state_name, **_reconcile(ledger, platform, api)}
            rows.append(row)
            _print(row, out)
        engine.dispose()
    return rows


def main() -> None:
    """Print a row per reconcile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,250,1000")
    parser.add_argument("--broken", type=int, default=10)
    arguments = parser.parse_args()
    run([int(size) for size in arguments.sizes.split(",")], arguments.broken)


def _print(row: dict[str, Any], out: TextIO) -> None:
    print(
        f"{row['instances']:>9} {row['state']:<18} {row['lists']:>5.0f} {row['repairs']:>7.0f} "
        f"{row['requests']:>8.0f} {row['plan_s']:>7.2f} {row['total_s']:>7.2f}",
        file=out,
    )


if __name__ == "__main__":
    main()
