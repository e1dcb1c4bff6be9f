"""A consumer process with a slow provision handler, for shutdown tests.

    python -m tests.consumers.consumer_process AMQP_URL STATE_URL HANDLER_SECONDS GRACE_SECONDS

Prints `handling <command id>` when a handler starts and `stopped <signal>` at the end.
"""

import sys
from collections.abc import Mapping

from pydantic import SecretStr
from sqlalchemy.engine import Engine

from consumers.health import Health
from consumers.processing import Processor
from consumers.relay import OutboxRelay
from consumers.runtime import ConsumerRuntime
from consumers.settings import AmqpSettings, ConsumerSettings
from handlers.results import Handler, HandlerContext, HandlerResult
from messages.commands import AnyCommand
from messages.settings import ContractSettings
from store.database import create_engine
from store.ledger import Ledger
from store.migrate import upgrade
from store.outbox import OutboxRelayStore
from store.settings import StoreSettings
from tests.catalog import MACHINE, registry_of
from tests.consumers.harness import FAST, ProvisionFake


def main() -> None:
    """Serve until SIGTERM."""
    amqp_url, state_url, handler_seconds, grace = sys.argv[1:5]
    engine = create_engine(StoreSettings(url=SecretStr(state_url)))
    upgrade(engine)
    fake = ProvisionFake(sleep=float(handler_seconds))

    def announced(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        print(f"handling {command.id}", flush=True)
        return fake(command, context)

    settings = FAST.model_copy(update={"shutdown_grace_seconds": float(grace)})
    name = serve(amqp_url, engine, {"odoo.instance.provision.v1": announced}, settings)
    print(f"stopped {name}", flush=True)


def serve(
    amqp_url: str, engine: Engine, handlers: Mapping[str, Handler], settings: ConsumerSettings
) -> str:
    """A consumer with these handlers until a signal; prints `ready` once consuming; the
    signal's name."""
    processor = Processor(
        Ledger(engine, MACHINE), registry_of(handlers), settings, ContractSettings()
    )
    runtime = ConsumerRuntime(
        AmqpSettings(url=SecretStr(amqp_url)),
        settings,
        processor,
        OutboxRelay(OutboxRelayStore(engine)),
        Health(),
    )
    return runtime.run(on_ready=lambda: print("ready", flush=True))


if __name__ == "__main__":
    main()
