"""A consumer process that exports its metrics over OTLP as the service does (the standard
OTEL_* variables), for the live alert test.

    python -m tests.consumers.metrics_process AMQP_URL STATE_URL

Prints `ready` once consuming; stops on SIGTERM, flushing its metrics.
"""

import sys

from pydantic import SecretStr

from instance_service import __version__
from store.database import create_engine
from store.migrate import upgrade
from store.settings import StoreSettings
from telemetry.metrics import configure_metrics
from tests.consumers.consumer_process import serve
from tests.consumers.harness import FAST, ProvisionFake


def main() -> None:
    """Serve until SIGTERM."""
    amqp_url, state_url = sys.argv[1:3]
    provider = configure_metrics(__version__)
    engine = create_engine(StoreSettings(url=SecretStr(state_url)))
    upgrade(engine)
    serve(amqp_url, engine, {"odoo.instance.provision.v1": ProvisionFake()}, FAST)
    if provider is not None:
        provider.shutdown()


if __name__ == "__main__":
    main()
