"""Reaction latency: from the moment an instance's Deployment is rolled out (its pod Ready, as
the API server records it) to the result event of the `start` that was waiting for it, for
the watch-based handlers and for a baseline that polls every 5 s like the predecessor did, in
the same run. Needs the local stack (`python -m devstack up`).

    .venv/bin/python -m bench.reaction [--instances 3] [--cycles 3]

The moment of the rollout is taken by a watch of the bench's own on the Deployments (it sees
the API server's change within milliseconds); the event's arrival on an observing queue ends the
measure. Each cycle stops and starts every instance; the two variants run one after the other
on the same instances, with the same consumer settings.
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from kubernetes import client, watch
from pydantic import SecretStr

from bench.provision import Events
from bench.stack import (
    Tenants,
    observer,
    provision_data,
    publish,
    serving,
    tenant_namespace,
    vhost,
)
from consumers.settings import AmqpSettings, ConsumerSettings
from consumers.topology import declare_on_broker
from handlers.catalog import command_catalog
from handlers.results import Handler
from k8s.apply import Kubernetes, WaitTimeoutError, rolled_out
from k8s.kinds import Kind
from k8s.names import InstanceNames
from messages.publishing import build_command
from store.database import create_engine
from store.migrate import upgrade
from store.settings import StoreSettings

T = "odoo.instance."
POLL_SECONDS = 5.0
SETTINGS = ConsumerSettings(health_port=0, relay_interval_seconds=0.05)
R = TypeVar("R")


class PollingKubernetes(Kubernetes):
    """The baseline: waits by reading the object every 5 s, as the predecessor's Celery tasks."""

    def wait_for(
        self,
        kind: Kind[R],
        name: str,
        condition: Callable[[R], bool],
        deadline_seconds: float,
    ) -> R:
        """Read, check, sleep, until the condition holds or the deadline passes."""
        end = time.monotonic() + deadline_seconds
        while True:
            found = self.get(kind, name)
            if found is not None and condition(found):
                return found
            if time.monotonic() + POLL_SECONDS > end:
                raise WaitTimeoutError(f"{kind} {self.namespace}/{name}: not yet", found)
            time.sleep(POLL_SECONDS)


class RolloutClock:
    """When each armed Deployment first shows one ready pod, seen through a watch of its own."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.moments: dict[str, float] = {}
        self._armed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        apps = client.AppsV1Api(api)
        self._thread = threading.Thread(target=self._run, args=(apps, namespace), daemon=True)
        self._thread.start()

    def arm(self, name: str) -> None:
        """Measure the next rollout of `name`."""
        with self._lock:
            self.moments.pop(name, None)
            self._armed.add(name)

    def _run(self, apps: client.AppsV1Api, namespace: str) -> None:
        ready = rolled_out(1)
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                apps.list_namespaced_deployment, namespace, timeout_seconds=5
            ):
                deployment = event["object"]
                name = deployment.metadata.name
                if ready(deployment):
                    now = time.perf_counter()
                    with self._lock:
                        if name in self._armed:
                            self._armed.discard(name)
                            self.moments[name] = now

    def close(self) -> None:
        """Stop watching."""
        self._stop.set()


DONE = {"provision": "provisioned", "start": "started", "stop": "stopped"}


def _run_command(amqp_url: str, events: Events, verb: str, data: dict[str, Any]) -> float:
    """Publish, wait for the result event; when it arrived (perf_counter)."""
    command = build_command(f"{T}{verb}.v1", data, source="/bench")
    publish(amqp_url, [command])
    command_id = command.properties.message_id or ""
    when, event = events.wait([command_id], timeout=300)[command_id]
    if event["type"] != f"{T}{DONE[verb]}.v1":
        raise RuntimeError(f"{verb}: {event['type']} {event['data']}")
    return when


def run(instances: int, cycles: int, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Samples and medians of both variants."""
    with tenant_namespace("bench-reaction") as tenants:
        return _run(instances, cycles, tenants, out)


def _run(instances: int, cycles: int, tenants: Tenants, out: TextIO) -> dict[str, Any]:
    api, namespace, databases = tenants.api, tenants.namespace, tenants.databases

    def handlers(cluster: Callable[[], Kubernetes]) -> dict[str, Handler]:
        return command_catalog().handlers(tenants.platform(cluster))

    variants: dict[str, Callable[[], Kubernetes]] = {
        "watch": lambda: Kubernetes(api, namespace),
        f"poll every {POLL_SECONDS:g} s": lambda: PollingKubernetes(api, namespace),
    }
    ids = [str(uuid.uuid4()) for _ in range(instances)]
    samples: dict[str, list[float]] = {name: [] for name in variants}
    clock = RolloutClock(api, namespace)
    try:
        with vhost("bench-reaction") as (_name, amqp_url), tempfile.TemporaryDirectory() as state:
            engine = create_engine(
                StoreSettings(url=SecretStr(f"sqlite:///{Path(state) / 's.db'}"))
            )
            upgrade(engine)
            declare_on_broker(AmqpSettings(url=SecretStr(amqp_url)), SETTINGS)
            events = Events(amqp_url, observer(amqp_url))
            with serving(amqp_url, engine, handlers(variants["watch"]), SETTINGS):
                for instance_id in ids:
                    _run_command(
                        amqp_url,
                        events,
                        "provision",
                        provision_data(instance_id, f"r-{instance_id[:18]}"),
                    )
            for variant, cluster in variants.items():
                with serving(amqp_url, engine, handlers(cluster), SETTINGS):
                    for _ in range(cycles):
                        for instance_id in ids:
                            _run_command(amqp_url, events, "stop", {"instance_id": instance_id})
                            name = InstanceNames(instance_id).base
                            clock.arm(name)
                            arrived = _run_command(
                                amqp_url, events, "start", {"instance_id": instance_id}
                            )
                            samples[variant].append(arrived - clock.moments[name])
            events.close()
            engine.dispose()
    finally:
        clock.close()
        for instance_id in ids:
            names = InstanceNames(instance_id)
            databases.drop(names.role, names.database)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    watch_median, poll_median = medians.values()
    print(f"{'variant':<16} {'samples':>7} {'median s':>9} {'max s':>7}", file=out)
    for name, values in samples.items():
        print(f"{name:<16} {len(values):>7} {medians[name]:>9.3f} {max(values):>7.3f}", file=out)
    print(f"polling takes {poll_median / watch_median:.1f}x as long to react", file=out)
    return {"samples": samples, "medians": medians, "ratio": poll_median / watch_median}


def main() -> None:
    """Print both variants' medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=3)
    arguments = parser.parse_args()
    run(arguments.instances, arguments.cycles)


if __name__ == "__main__":
    main()
