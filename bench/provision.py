"""Provision throughput and latency through one consumer with the real handlers, and the
Kubernetes API requests each command type makes. Needs the local stack (`python -m devstack up`).

    .venv/bin/python -m bench.provision [--sizes 50,200] [--park 64]

For each size, that many provisions are published at once to the run's own vhost and namespace
(the servers of the size before are removed first, so each size meets an empty node); one in-process
consumer (4 workers per queue, as deployed) carries them out against the real control plane
(kwok plays the pods), the tenant PostgreSQL and the Odoo stand-in, configured as deploy/'s long
Deployment: waiting handlers park (up to `--park`, 64, at once; the prefetch is the workers plus
that) and are resumed by the consumer's informer (docs/consumer.md, "Waiting without a thread"),
and commands are decided one at a time (`batch_size` 1). Latency is
from the publish to the `provisioned` event arriving on an observing queue; the machine's CPU
in that window is printed by part of the stack (bench/cpu.py: the consumer's share against the
control plane's, and how many of the cores were busy). Then one instance
goes through every other command once, and each operation's recorded request count is printed.
Tenant databases and the namespace are removed at the end. `--park 0` gives the consumer of
before issue 18: a waiting handler holds its worker, prefetch 8.
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any, TextIO

import pika
from kubernetes import client
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from bench import cpu
from bench.stack import (
    Tenants,
    observer,
    provision_data,
    publish,
    serving,
    tenant_namespace,
    vhost,
)
from consumers.cluster_events import InformerEvents
from consumers.parking import ParkingLot
from consumers.settings import AmqpSettings, ConsumerSettings
from consumers.topology import declare_on_broker
from handlers.catalog import command_catalog
from handlers.progress import REQUESTS_KEY
from k8s.apply import Kubernetes
from k8s.names import InstanceNames
from k8s.spec import INSTANCE_LABEL
from messages.publishing import build_command
from store.database import create_engine
from store.migrate import upgrade
from store.models import Operation
from store.settings import StoreSettings

T = "odoo.instance."
SETTINGS = ConsumerSettings(health_port=0, relay_interval_seconds=0.05, batch_size=1)
PARKED = 64
"""Waits parked at once by default, as deploy/'s long Deployment (`MAX_WAITING`)."""
LIFE: tuple[tuple[str, dict[str, Any]], ...] = (
    ("stop", {}),
    ("start", {}),
    ("restart", {}),
    ("suspend", {"reason": "payment_failed"}),
    ("unsuspend", {}),
    ("resize", {"plan": {"cpu_millicores": 1000, "memory_mib": 2048, "storage_gib": 8}}),
    ("backup", {"backup_id": "__backup__"}),
    ("restore", {"backup_id": "__backup__"}),
    ("upgrade", {"odoo_version": "18.0"}),
    ("terminate", {"reason": "subscription_cancelled"}),
    ("reactivate", {}),
    ("delete", {"final_backup": False}),
)


class Events:
    """Result events as they arrive, with their arrival time, read by a thread of its own."""

    def __init__(self, amqp_url: str, queue: str) -> None:
        self.arrived: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(amqp_url, queue), daemon=True)
        self._thread.start()

    def _read(self, amqp_url: str, queue: str) -> None:
        with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
            channel = connection.channel()
            for _method, _properties, body in channel.consume(
                queue, auto_ack=True, inactivity_timeout=0.1
            ):
                if self._stop.is_set():
                    return
                if body is None:
                    continue
                event = json.loads(body)
                with self._lock:
                    self.arrived[event["causationid"]] = (time.perf_counter(), event)

    def wait(self, command_ids: list[str], timeout: float) -> dict[str, tuple[float, Any]]:
        """The events of these commands, once all have arrived."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                found = {c: self.arrived[c] for c in command_ids if c in self.arrived}
            if len(found) == len(command_ids):
                return found
            if time.monotonic() > end:
                raise TimeoutError(f"{len(found)} of {len(command_ids)} events arrived")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join(5)


def _provision(instance_id: str) -> Any:
    data = provision_data(instance_id, f"b-{instance_id[:18]}")
    return build_command(f"{T}provision.v1", data, source="/bench")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(sizes: list[int], out: TextIO = sys.stdout, park: int = PARKED) -> dict[str, Any]:
    """Provision each size at once, then one whole life; figures by size and by command."""
    with tenant_namespace("bench-provision") as tenants:
        return _run(sizes, tenants, out, park)


def _run(sizes: list[int], tenants: Tenants, out: TextIO, park: int) -> dict[str, Any]:
    platform, databases = tenants.platform(), tenants.databases
    settings = SETTINGS.model_copy(
        update={"max_waiting": park, "prefetch": SETTINGS.workers + (park or SETTINGS.workers)}
    )
    parking, informer = None, None
    if park:
        informer = InformerEvents(lambda: Kubernetes(tenants.api, tenants.namespace))
        parking = ParkingLot(informer, park)
    made: list[str] = []
    figures: dict[str, Any] = {"provision": [], "requests": {}}
    try:
        with vhost("bench-provision") as (_name, amqp_url), tempfile.TemporaryDirectory() as state:
            engine = create_engine(
                StoreSettings(url=SecretStr(f"sqlite:///{Path(state) / 's.db'}"))
            )
            upgrade(engine)
            amqp = AmqpSettings(url=SecretStr(amqp_url))
            declare_on_broker(amqp, SETTINGS)
            events = Events(amqp_url, observer(amqp_url))
            handlers = command_catalog().handlers(platform)
            with serving(amqp_url, engine, handlers, settings, parking):
                print(
                    f"{'provisions':>10} {'seconds':>8} {'per s':>6} "
                    f"{'p50 s':>6} {'p95 s':>6} {'p99 s':>6}",
                    file=out,
                )
                for size in sizes:
                    instance_ids = [str(uuid.uuid4()) for _ in range(size)]
                    made += instance_ids
                    commands = [_provision(i) for i in instance_ids]
                    command_ids = [c.properties.message_id or "" for c in commands]
                    before = cpu.snapshot()
                    started = time.perf_counter()
                    publish(amqp_url, commands)
                    arrived = events.wait(command_ids, timeout=60 + size * 5)
                    used = cpu.spent(before, cpu.snapshot())
                    latencies = [arrived[c][0] - started for c in command_ids]
                    kinds = {arrived[c][1]["type"] for c in command_ids}
                    row = {
                        "provisions": size,
                        "succeeded": sum(
                            arrived[c][1]["type"] == f"{T}provisioned.v1" for c in command_ids
                        ),
                        "seconds": max(latencies),
                        "per_second": size / max(latencies),
                        "p50_s": statistics.median(latencies),
                        "p95_s": _percentile(latencies, 0.95),
                        "p99_s": _percentile(latencies, 0.99),
                        "event_types": sorted(kinds),
                        "cpu_core_seconds": used,
                    }
                    figures["provision"].append(row)
                    print(
                        f"{size:>10} {row['seconds']:>8.1f} {row['per_second']:>6.2f} "
                        f"{row['p50_s']:>6.2f} {row['p95_s']:>6.2f} {row['p99_s']:>6.2f}",
                        file=out,
                    )
                    print("\n".join(cpu.table(used, size, "provision")), file=out)
                    _free_the_node(tenants, keep=made[0])
                figures["requests"] = _whole_life(made[0], amqp_url, events, engine, out)
            events.close()
            engine.dispose()
    finally:
        if parking is not None and informer is not None:
            parking.close()
            informer.close()
        for instance_id in made:
            names = InstanceNames(instance_id)
            databases.drop(names.role, names.database)
    return figures


def _free_the_node(tenants: Tenants, keep: str, timeout: float = 300) -> None:
    """Remove every server but `keep`'s and wait for their pods to go, so the next size meets
    an empty node (the fake node fits 400 Odoo pods at 500m) and an idle scheduler."""
    apps, core = client.AppsV1Api(tenants.api), client.CoreV1Api(tenants.api)
    for deployment in apps.list_namespaced_deployment(tenants.namespace).items:
        name, instance = _identity(deployment.metadata)
        if instance != keep:
            apps.delete_namespaced_deployment(
                name, tenants.namespace, propagation_policy="Background"
            )
    deadline = time.monotonic() + timeout
    while True:
        pods = core.list_namespaced_pod(
            tenants.namespace, field_selector="status.phase!=Succeeded"
        ).items
        if all(_identity(pod.metadata)[1] == keep for pod in pods):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pods)} pods still there after {timeout:.0f} s")
        time.sleep(1)


def _identity(metadata: client.V1ObjectMeta | None) -> tuple[str, str | None]:
    """An object's name and the instance it belongs to."""
    if metadata is None:
        return "", None
    return metadata.name or "", (metadata.labels or {}).get(INSTANCE_LABEL)


def _whole_life(
    instance_id: str, amqp_url: str, events: Events, engine: Any, out: TextIO
) -> dict[str, int]:
    """Every other command once on one instance; API requests recorded per operation."""
    backup_id = str(uuid.uuid4())
    for verb, extra in LIFE:
        data = {"instance_id": instance_id, **extra}
        if data.get("backup_id") == "__backup__":
            data["backup_id"] = backup_id
        command = build_command(f"{T}{verb}.v1", data, source="/bench")
        publish(amqp_url, [command])
        command_id = command.properties.message_id or ""
        (_when, event) = events.wait([command_id], timeout=300)[command_id]
        if event["type"].endswith(("failed.v1", "rejected.v1")):
            raise RuntimeError(f"{verb} failed: {event['data']}")
    with Session(engine) as session:
        operations = session.scalars(
            select(Operation).where(Operation.instance_id == instance_id)
        ).all()
        requests = {
            op.kind.removeprefix(T).removesuffix(".v1"): int(op.result.get(REQUESTS_KEY, 0))
            for op in operations
        }
    print(f"{'command':<12} {'API requests':>12}", file=out)
    for kind, count in requests.items():
        print(f"{kind:<12} {count:>12}", file=out)
    return requests


def main() -> None:
    """Print the provision table and the requests per command."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200")
    parser.add_argument(
        "--park", type=int, default=PARKED, help="waits parked at once (0: none, as before)"
    )
    arguments = parser.parse_args()
    run([int(size) for size in arguments.sizes.split(",")], park=arguments.park)


if __name__ == "__main__":
    main()
