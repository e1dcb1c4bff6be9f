"""The instance status machine: which command may run in which status, and where it leads.

This table is the one place that decides; docs/status-machine.md shows it to people, and a test
checks that the two agree for every (status, command) pair.
"""

from dataclasses import dataclass
from enum import StrEnum


class InstanceStatus(StrEnum):
    """What an instance is, or is becoming."""

    PROVISIONING = "provisioning"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    RESTARTING = "restarting"
    SUSPENDED = "suspended"
    RESIZING = "resizing"
    UPGRADING = "upgrading"
    BACKING_UP = "backing_up"
    RESTORING = "restoring"
    TERMINATED = "terminated"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"
    DEGRADED = "degraded"


S = InstanceStatus

WORKING = frozenset(
    {
        S.PROVISIONING,
        S.STARTING,
        S.STOPPING,
        S.RESTARTING,
        S.RESIZING,
        S.UPGRADING,
        S.BACKING_UP,
        S.RESTORING,
        S.DELETING,
    }
)
"""Statuses of an operation in progress: other commands wait for it to end (retry later)."""

SERVING = frozenset({S.RUNNING, S.DEGRADED})


class Verdict(StrEnum):
    """What to do with a command in a status."""

    RUN = "run"
    WAIT = "wait"  # an operation is in progress: retry later, do not reject
    NOT_ALLOWED = "not_allowed"
    UNKNOWN_INSTANCE = "unknown_instance"


@dataclass(frozen=True)
class Transition:
    """A command's path: the statuses it may start from, while it works, and when it is done.

    `done` None means the instance returns to the status it had before the command.
    """

    allowed_from: frozenset[InstanceStatus]
    working: InstanceStatus | None
    done: InstanceStatus | None


TRANSITIONS: dict[str, Transition] = {
    # A failed provision may be provisioned again (same data; the handler checks the data).
    "odoo.instance.provision.v1": Transition(frozenset({S.ERROR}), S.PROVISIONING, S.RUNNING),
    "odoo.instance.start.v1": Transition(
        frozenset({S.STOPPED, S.RUNNING, S.DEGRADED, S.ERROR}), S.STARTING, S.RUNNING
    ),
    "odoo.instance.stop.v1": Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.ERROR}), S.STOPPING, S.STOPPED
    ),
    "odoo.instance.restart.v1": Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.ERROR}), S.RESTARTING, S.RUNNING
    ),
    # Billing may suspend whatever serves or could serve; a suspended instance stays suspended.
    "odoo.instance.suspend.v1": Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.ERROR, S.SUSPENDED}),
        S.STOPPING,
        S.SUSPENDED,
    ),
    # The predecessor could not leave `suspended`; unsuspend is its one way back to serving.
    "odoo.instance.unsuspend.v1": Transition(
        frozenset({S.SUSPENDED, S.RUNNING, S.DEGRADED}), S.STARTING, S.RUNNING
    ),
    "odoo.instance.resize.v1": Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.SUSPENDED}), S.RESIZING, None
    ),
    "odoo.instance.upgrade.v1": Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED}), S.UPGRADING, None
    ),
    "odoo.instance.backup.v1": Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.SUSPENDED, S.TERMINATED}),
        S.BACKING_UP,
        None,
    ),
    "odoo.instance.restore.v1": Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.ERROR}), S.RESTORING, None
    ),
    # Terminate stops serving and keeps every byte; reactivate is its way back.
    "odoo.instance.terminate.v1": Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.SUSPENDED, S.ERROR, S.TERMINATED}),
        S.STOPPING,
        S.TERMINATED,
    ),
    "odoo.instance.reactivate.v1": Transition(frozenset({S.TERMINATED}), S.STARTING, S.RUNNING),
    "odoo.instance.delete.v1": Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.SUSPENDED, S.TERMINATED, S.ERROR}),
        S.DELETING,
        S.DELETED,
    ),
}
"""Instance command type -> its transition. The fleet command has none: it changes no status."""


def decide(status: InstanceStatus | None, command_type: str) -> Verdict:
    """Whether `command_type` may run on an instance in `status` (None: no such instance)."""
    transition = TRANSITIONS[command_type]
    if status is None:
        is_provision = command_type == "odoo.instance.provision.v1"
        return Verdict.RUN if is_provision else Verdict.UNKNOWN_INSTANCE
    if status in transition.allowed_from:
        return Verdict.RUN
    if status in WORKING:
        return Verdict.WAIT
    return Verdict.NOT_ALLOWED


def status_after(transition: Transition, before: InstanceStatus) -> InstanceStatus:
    """The status an instance has once the command succeeded."""
    if transition.done is not None:
        return transition.done
    return S.RUNNING if before is S.ERROR else before
