"""The two ceilings under provisioning: how fast the stack's PostgreSQL creates a tenant's role and
database, and how fast the API server creates a provision's objects, each measured alone with
the service's own code (store/tenant_database.py, the k8s/ manifest builders and client), with
no broker and no handler around them. A provision through the consumer cannot beat the slower
of the two; `bench.provision` is judged against it. Needs the local stack.

    .venv/bin/python -m bench.ceilings [--instances 60] [--threads 1,4,8]

Each figure is instances per second with that many threads working at once; the best over the
thread counts is the ceiling. Databases and the namespace are removed afterwards.
"""

import argparse
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.stack import Tenants, provisions, tenant_namespace
from handlers.specs import instance_spec
from k8s.apply import Kubernetes
from k8s.credentials import generate_credentials
from k8s.exposure import build_ingress, build_service
from k8s.kinds import DEPLOYMENT, INGRESS, JOB, NETWORK_POLICY, PVC, SECRET, SERVICE
from k8s.network import build_network_policies
from k8s.spec import InstanceSpec
from k8s.workload import build_deployment, build_init_job, build_secret, build_volume
from messages.commands import ProvisionCommand
from messages.parsing import parse_command
from store.records import InstanceShape

OBJECTS = 7
"""What a provision creates in the API server: Secret, Service, NetworkPolicy, Ingress, PVC,
the init Job and the Deployment."""


def _specs(count: int) -> list[InstanceSpec]:
    specs = []
    for message in provisions(count, "c"):
        command = parse_command(message.body, message.properties)
        if not isinstance(command, ProvisionCommand):
            raise SystemExit(f"the benchmark's own provision did not parse: {command}")
        specs.append(instance_spec(InstanceShape.asked(command.data)))
    return specs


def _rate(count: int, threads: int, work: Callable[[int], None]) -> float:
    """Instances per second doing `work(index)` for every index with `threads` at once."""
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(count)))
    return count / (time.perf_counter() - started)


def databases(tenants: Tenants, count: int, threads: int) -> float:
    """Roles and databases created per second, as the provision's `database` step creates them."""
    specs = _specs(count)

    def create(index: int) -> None:
        names = specs[index].names
        tenants.databases.ensure(names.role, names.database, uuid.uuid4().hex)

    try:
        return _rate(count, threads, create)
    finally:
        for spec in specs:
            tenants.databases.drop(spec.names.role, spec.names.database)


def objects(tenants: Tenants, count: int, threads: int) -> float:
    """Provisions' objects created per second (all eight of one instance per unit)."""
    specs = _specs(count)
    platform = tenants.platform()
    settings, namespace = platform.tenants, tenants.namespace

    def create(index: int) -> None:
        spec = specs[index]
        cluster = Kubernetes(tenants.api, namespace)
        cluster.apply(SECRET, build_secret(spec, generate_credentials(), settings, namespace))
        cluster.apply(SERVICE, build_service(spec, namespace))
        for policy in build_network_policies(spec, settings, namespace):
            cluster.apply(NETWORK_POLICY, policy)
        cluster.apply(INGRESS, build_ingress(spec, settings, namespace))
        cluster.apply(PVC, build_volume(spec, settings, namespace))
        cluster.apply(JOB, build_init_job(spec, settings, namespace))
        cluster.apply(DEPLOYMENT, build_deployment(spec, settings, namespace, replicas=0))

    return _rate(count, threads, create)


def run(count: int, thread_counts: list[int]) -> dict[str, dict[str, float]]:
    """Instances per second by ceiling and thread count, and the best of each."""
    results: dict[str, dict[str, float]] = {"databases": {}, "objects": {}}
    for threads in thread_counts:
        with tenant_namespace("bench-ceiling") as tenants:
            results["databases"][str(threads)] = databases(tenants, count, threads)
            results["objects"][str(threads)] = objects(tenants, count, threads)
    for figures in results.values():
        figures["best"] = max(figures.values())
    return results


def main() -> None:
    """Print both ceilings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=60)
    parser.add_argument("--threads", default="1,4,8")
    arguments = parser.parse_args()
    thread_counts = [int(part) for part in arguments.threads.split(",")]
    print(f"{arguments.instances} instances; instances per second by threads at once")
    results = run(arguments.instances, thread_counts)
    header = "".join(f"{t + ' threads':>12}" for t in map(str, thread_counts))
    print(f"{'ceiling':<34}{header}{'best':>10}")
    labels = {
        "databases": "PostgreSQL: role + database",
        "objects": f"API server: a provision's {OBJECTS} objects",
    }
    for key, figures in results.items():
        cells = "".join(f"{figures[str(t)]:>12.1f}" for t in thread_counts)
        print(f"{labels[key]:<34}{cells}{figures['best']:>10.1f}")


if __name__ == "__main__":
    main()
