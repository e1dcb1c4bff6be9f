"""Which handler carries out which command type: the instance handlers of one Platform."""

from handlers.backups import Backup, Restore
from handlers.delete import Delete
from handlers.lifecycle import BringUp, Restart, TakeDown
from handlers.platform import Platform
from handlers.provision import Provision
from handlers.reconcile import Reconcile
from handlers.resize import Resize
from handlers.results import Handler
from handlers.upgrade import Upgrade
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
    """Command type -> handler, for every command of the contract."""
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
        "odoo.instance.resize.v1": Resize(platform),
        "odoo.instance.upgrade.v1": Upgrade(platform),
        "odoo.instance.backup.v1": Backup(platform),
        "odoo.instance.restore.v1": Restore(platform),
        "odoo.fleet.reconcile.v1": Reconcile(platform),
    }
