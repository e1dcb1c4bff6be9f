"""The instance status machine: which command may run in which status, and where it leads.

This table is the one place that decides; docs/status-machine.md shows it to people, and a test
checks that the two agree for every (status, command) pair. It also decides billing holds: a
suspended or terminated instance is held, the hold is recorded apart from the status (a backup
of a suspended instance shows `backing_up` while it works), and only unsuspend, reactivate or
delete lift it. Whatever else ends on a held instance (success, failure, rollback), it rests in
its hold again, never in a status from which `start` or `restart` would serve it.
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


class Hold(StrEnum):
    """A billing hold: the instance may not serve until billing lifts it."""

    SUSPENDED = "suspended"
    TERMINATED = "terminated"


HOLD_STATUS = {Hold.SUSPENDED: S.SUSPENDED, Hold.TERMINATED: S.TERMINATED}
"""The status a held instance rests in."""


class Ending(StrEnum):
    """How a command that began ended, as far as the instance is concerned."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    """Failed having changed nothing: the instance is as it was before."""


class Verdict(StrEnum):
    """What to do with a command in a status."""

    RUN = "run"
    WAIT = "wait"  # an operation is in progress: retry later, do not reject
    NOT_ALLOWED = "not_allowed"
    UNKNOWN_INSTANCE = "unknown_instance"


@dataclass(frozen=True)
class Transition:
    """A command's path: the statuses it may start from, while it works, and when it is done.

    `done` None means the instance returns to the status it had before the command. `takes` is
    the hold the command puts on the instance as it begins (billing's decision does not wait for
    the pods to go, and stays if they do not); `lifts` says that its success ends any hold.
    """

    allowed_from: frozenset[InstanceStatus]
    working: InstanceStatus | None
    done: InstanceStatus | None
    takes: Hold | None = None
    lifts: bool = False


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
        takes=Hold.SUSPENDED,
    ),
    # The predecessor could not leave `suspended`; unsuspend is its one way back to serving.
    "odoo.instance.unsuspend.v1": Transition(
        frozenset({S.SUSPENDED, S.RUNNING, S.DEGRADED}), S.STARTING, S.RUNNING, lifts=True
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
        takes=Hold.TERMINATED,
    ),
    "odoo.instance.reactivate.v1": Transition(
        frozenset({S.TERMINATED}), S.STARTING, S.RUNNING, lifts=True
    ),
    "odoo.instance.delete.v1": Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.SUSPENDED, S.TERMINATED, S.ERROR}),
        S.DELETING,
        S.DELETED,
        lifts=True,
    ),
}
"""Instance command type -> its transition. The fleet command has none: it changes no status."""


def decide(status: InstanceStatus | None, command_type: str, hold: Hold | None = None) -> Verdict:
    """Whether `command_type` may run on an instance in `status` (None: no such instance).

    A held instance at rest is judged as its hold's status, whatever its status column says.
    """
    transition = TRANSITIONS[command_type]
    if status is None:
        is_provision = command_type == "odoo.instance.provision.v1"
        return Verdict.RUN if is_provision else Verdict.UNKNOWN_INSTANCE
    if hold is not None and status not in WORKING and status is not S.DELETED:
        status = HOLD_STATUS[hold]
    if status in transition.allowed_from:
        return Verdict.RUN
    if status in WORKING:
        return Verdict.WAIT
    return Verdict.NOT_ALLOWED


def status_after(transition: Transition, before: InstanceStatus) -> InstanceStatus:
    """The status an instance has once the command succeeded (holds aside: see `settle`)."""
    if transition.done is not None:
        return transition.done
    return S.RUNNING if before is S.ERROR else before


def lifted_by(hold: Hold) -> list[str]:
    """The command types that may lift `hold`."""
    status = HOLD_STATUS[hold]
    return [t for t, tr in TRANSITIONS.items() if tr.lifts and status in tr.allowed_from]


def hold_on_begin(command_type: str, hold: Hold | None) -> Hold | None:
    """The instance's hold once `command_type` began on it."""
    return TRANSITIONS[command_type].takes or hold


@dataclass(frozen=True)
class Rest:
    """Where an instance rests once a command ended: its status and its hold."""

    status: InstanceStatus
    hold: Hold | None


def settle(
    command_type: str, before: InstanceStatus | None, hold: Hold | None, ending: Ending
) -> Rest:
    """The instance's status and hold after `command_type`, begun in `before` (None: it began
    by creating the instance), ended so; `hold` is the instance's hold before or since the
    command began (the same answer either way).

    Only a success of a command that lifts holds ends one; a held instance rests in its hold's
    status whatever else happened, so no failure leaves it where `start` or `restart` runs.
    """
    transition = TRANSITIONS[command_type]
    hold = transition.takes or hold
    if ending is Ending.SUCCEEDED:
        status = status_after(transition, before or S.ERROR)
        if transition.lifts:
            hold = None
    elif ending is Ending.ROLLED_BACK and before is not None:
        status = before
    else:
        status = S.ERROR  # nothing to go back to: `error` lets a provision run again
    if hold is not None:
        status = HOLD_STATUS[hold]
    return Rest(status, hold)
