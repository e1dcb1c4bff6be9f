"""A worker that records a command's outcome and then hangs before publishing, to be killed.

python -m tests.store.crash_worker DATABASE_URL
"""

import sys
import time

from pydantic import SecretStr

from messages.commands import InstanceCommand
from messages.events import InstanceEventData, StoppedEvent
from store.database import create_engine
from store.ledger import Ledger
from store.migrate import upgrade
from store.records import Outcome
from store.settings import StoreSettings
from tests.catalog import MACHINE
from tests.store.conftest import command
from tests.store.test_ledger import _provision


def main() -> None:
    """Provision, then start: commit the outcome, say so, and wait to be killed."""
    engine = create_engine(StoreSettings(url=SecretStr(sys.argv[1])))
    upgrade(engine)
    ledger = Ledger(engine, MACHINE)
    _provision(ledger)
    stop = command("odoo.instance.stop.v1", seconds=1)
    assert isinstance(stop, InstanceCommand)
    with ledger.exclusive(stop):
        ledger.begin(stop, ledger.admit(stop))
        event = StoppedEvent.caused_by(stop, InstanceEventData(instance_id=stop.subject))
        ledger.record(stop, Outcome.SUCCEEDED, event)
        print(event.id, flush=True)  # committed; the publish would come next
        time.sleep(600)


if __name__ == "__main__":
    main()
