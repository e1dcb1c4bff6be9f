"""Which handler carries out which command type: the lifecycle handlers of one Platform."""

from handlers.delete import Delete
from handlers.lifecycle import BringUp, Restart, TakeDown
from handlers.platform import Platform
from handlers.provision import Provision
from handlers.results import Handler
from messages.events import (
    ReactivatedEvent,
    RestartedEvent,
    StartedEvent,
    StoppedEvent,
    SuspendedEvent,
    TerminatedEvent,
    UnsuspendedEvent,
)


def lifecycle_handlers(platform: Platform) -> dict[str, Handler]:
    """Command type -> handler, for every lifecycle command of the contract."""
    return {
        "odoo.instance.provision.v1": Provision(platform),
        "odoo.instance.start.v1": BringUp(platform, StartedEvent),
        "odoo.instance.unsuspend.v1": BringUp(platform, UnsuspendedEvent),
        "odoo.instance.reactivate.v1": BringUp(platform, ReactivatedEvent),
        "odoo.instance.stop.v1": TakeDown(platform, StoppedEvent),
        "odoo.instance.suspend.v1": TakeDown(platform, SuspendedEvent),
        "odoo.instance.terminate.v1": TakeDown(platform, TerminatedEvent),
        "odoo.instance.restart.v1": Restart(platform, RestartedEvent),
        "odoo.instance.delete.v1": Delete(platform),
    }
