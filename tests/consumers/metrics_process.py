"""A consumer process that exports its metrics over OTLP as the service does (the standard
OTEL_* variables), for the live alert test.

    python -m tests.consumers.metrics_process AMQP_URL STATE_URL

Prints `ready` once consuming; stops on SIGTERM, flushing its metrics.
"""

import sys

from pydantic import SecretStr

from consumers.health import Health
from consumers.processing import Processor
from consumers.relay import OutboxRelay
from consumers.runtime import ConsumerRuntime
from consumers.settings import AmqpSettings
from instance_service import __version__
from messages.settings import ContractSettings
from store.database import create_engine
from store.ledger import Ledger
from store.migrate import upgrade
from store.outbox import OutboxRelayStore
from store.settings import StoreSettings
from telemetry.metrics import configure_metrics
from tests.catalog import MACHINE, registry_of
from tests.consumers.harness import FAST, ProvisionFake


def main() -> None:
    """Serve until SIGTERM."""
    amqp_url, state_url = sys.argv[1:3]
    provider = configure_metrics(__version__)
    engine = create_engine(StoreSettings(url=SecretStr(state_url)))
    upgrade(engine)
    processor = Processor(
        Ledger(engine, MACHINE),
        registry_of({"odoo.instance.provision.v1": ProvisionFake()}),
        FAST,
        ContractSettings(),
    )
    runtime = ConsumerRuntime(
        AmqpSettings(url=SecretStr(amqp_url)),
        FAST,
        processor,
        OutboxRelay(OutboxRelayStore(engine)),
        Health(),
    )
    runtime.run(on_ready=lambda: print("ready", flush=True))
    if provider is not None:
        provider.shutdown()


if __name__ == "__main__":
    main()
