"""Framework overhead: commands per second through one consumer whose handler does nothing, on
SQLite and on PostgreSQL. What is left is the service's own work per command: parse, inbox
check, instance lock, admission, operation, outcome and event in one transaction, publish with
a broker confirm, ack. Needs the local stack (`python -m devstack up`).

    .venv/bin/python -m bench.overhead [--commands N] [--prefetch P] [--batch-size B]

N provisions of distinct instances are published first; then a consumer starts with the
service's defaults (4 workers per queue, prefetch 100, batches of up to 50, as deploy/'s quick
Deployment runs them) unless told otherwise, and the clock runs until the N-th result event is
in the observing queue. A batch never exceeds what the prefetch lets in, so `--prefetch 8
--batch-size 1` shows the consumer one command at a time, as it was deployed before issue 18.
"""

import argparse
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from bench.stack import (
    depth_of,
    observer,
    postgres_database,
    provisions,
    publish,
    serving,
    vhost,
)
from consumers.settings import AmqpSettings, ConsumerSettings
from consumers.topology import declare_on_broker
from handlers.results import Completed, HandlerContext, HandlerResult
from messages.commands import AnyCommand, InstanceCommand
from messages.events import ProvisionedData, ProvisionedEvent, SecretReference
from store.database import create_engine
from store.migrate import upgrade
from store.settings import StoreSettings

PROVISION = "odoo.instance.provision.v1"
SETTINGS = ConsumerSettings(health_port=0, relay_interval_seconds=0.05)


def no_op(command: AnyCommand, context: HandlerContext) -> HandlerResult:
    """Answer at once, touching nothing outside the service."""
    assert isinstance(command, InstanceCommand)  # noqa: S101 - the registry routes provisions here
    data = ProvisionedData(
        instance_id=command.subject,
        url="https://bench.example",
        internal_url="http://odoo.bench.svc.cluster.local:8069",
        odoo_version="17.0",
        credentials_secret=SecretReference(namespace="bench", name="none"),
    )
    return Completed(ProvisionedEvent.caused_by(command, data))


def measure(store_url: str, count: int, settings: ConsumerSettings = SETTINGS) -> dict[str, float]:
    """Commands per second for `count` no-op provisions on this store."""
    engine = create_engine(StoreSettings(url=SecretStr(store_url)))
    upgrade(engine)
    with vhost("bench-overhead") as (_name, amqp_url):
        amqp = AmqpSettings(url=SecretStr(amqp_url))
        declare_on_broker(amqp, settings)
        events = observer(amqp_url)
        publish(amqp_url, provisions(count, "b"))
        started = time.perf_counter()
        with (
            depth_of(amqp_url, events) as answered,
            serving(amqp_url, engine, {PROVISION: no_op}, settings),
        ):
            while answered() < count:
                time.sleep(0.02)
            took = time.perf_counter() - started
    engine.dispose()
    return {"commands": count, "seconds": took, "per_second": count / took}


def run(count: int, settings: ConsumerSettings = SETTINGS) -> dict[str, dict[str, float]]:
    """Both stores; figures by store."""
    results = {}
    with tempfile.TemporaryDirectory() as state:
        results["sqlite"] = measure(f"sqlite:///{Path(state) / 'state.db'}", count, settings)
    with postgres_database("bench_overhead") as url:
        results["postgresql"] = measure(url, count, settings)
    return results


def main() -> None:
    """Print commands per second on each store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--prefetch", type=int, default=SETTINGS.prefetch)
    parser.add_argument("--batch-size", type=int, default=SETTINGS.batch_size)
    arguments = parser.parse_args()
    count = arguments.commands
    settings = SETTINGS.model_copy(
        update={"prefetch": arguments.prefetch, "batch_size": arguments.batch_size}
    )
    print(
        f"no-op handler, {count} provisions, one consumer (4 workers per queue, prefetch "
        f"{settings.prefetch}, batches of up to {settings.batch_size})"
    )
    print(f"{'store':<11} {'seconds':>8} {'commands/s':>11}")
    for store, figures in run(count, settings).items():
        print(f"{store:<11} {figures['seconds']:>8.2f} {figures['per_second']:>11.1f}")


if __name__ == "__main__":
    main()
