"""The instance status machine: which command may run in which status, and where it leads.

Each command declares its `Transition` next to its handler (handlers/declarations.py); the
composition root collects them into the one `StatusMachine` the ledger decides with, so store/
never imports handlers/. docs/status-machine.md shows the table to people, and a test checks
that the two agree for every (status, command) pair. It also decides billing holds: a
suspended or terminated instance is held, the hold is recorded apart from the status (a backup
of a suspended instance shows `backing_up` while it works), and only unsuspend, reactivate or
delete lift it. Whatever else ends on a held instance (success, failure, rollback), it rests in
its hold again, never in a status from which `start` or `restart` would serve it.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from store.settings import HOUR, OperationSettings


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
    CHANGING_DOMAINS = "changing_domains"
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
        S.CHANGING_DOMAINS,
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
    the pods to go, and stays if they do not); `lifts` says that its success ends any hold;
    `creates` that it runs where no instance exists yet (it makes one). `deadline_seconds` is
    how long the operation it opens may stay open before the watchdog steps in (settings may
    lengthen it): at least twice what a healthy one takes with the default waits.
    """

    allowed_from: frozenset[InstanceStatus]
    working: InstanceStatus | None
    done: InstanceStatus | None
    takes: Hold | None = None
    lifts: bool = False
    creates: bool = False
    deadline_seconds: float = field(kw_only=True)


def status_after(transition: Transition, before: InstanceStatus) -> InstanceStatus:
    """The status an instance has once the command succeeded (holds aside: see `settle`)."""
    if transition.done is not None:
        return transition.done
    return S.RUNNING if before is S.ERROR else before


@dataclass(frozen=True)
class Rest:
    """Where an instance rests once a command ended: its status and its hold."""

    status: InstanceStatus
    hold: Hold | None


class StatusMachineError(Exception):
    """The table handed to the status machine contradicts itself: start-up fails."""


class StatusMachine:
    """Decides with a table of instance command type -> transition, built from the declarations.

    `instance_locked`: the command types that hold their instance's lock while they run (the
    others hold the fleet's). Every command that changes an instance's status must be one of
    them, or two replicas could move the same instance at once.
    """

    def __init__(
        self, transitions: Mapping[str, Transition], instance_locked: Collection[str]
    ) -> None:
        unlocked = sorted(set(transitions) - set(instance_locked))
        if unlocked:
            raise StatusMachineError(
                f"{', '.join(unlocked)} change an instance's status without holding it"
            )
        self.transitions: Mapping[str, Transition] = MappingProxyType(dict(transitions))
        """Instance command type -> its transition. A fleet command has none."""
        self.instance_locked = frozenset(instance_locked)

    def transition(self, command_type: str) -> Transition:
        """The transition of an instance command type."""
        return self.transitions[command_type]

    def holds_instance(self, command_type: str) -> bool:
        """Whether `command_type` runs holding its instance's lock (else the fleet's)."""
        return command_type in self.instance_locked

    def decide(
        self, status: InstanceStatus | None, command_type: str, hold: Hold | None = None
    ) -> Verdict:
        """Whether `command_type` may run on an instance in `status` (None: no such instance).

        A held instance at rest is judged as its hold's status, whatever its status column says.
        """
        transition = self.transitions[command_type]
        if status is None:
            return Verdict.RUN if transition.creates else Verdict.UNKNOWN_INSTANCE
        if hold is not None and status not in WORKING and status is not S.DELETED:
            status = HOLD_STATUS[hold]
        if status in transition.allowed_from:
            return Verdict.RUN
        if status in WORKING:
            return Verdict.WAIT
        return Verdict.NOT_ALLOWED

    def deadline(self, command_type: str, operations: OperationSettings) -> float:
        """Seconds an operation of `command_type` may stay open: as configured, else as
        declared (an hour for a type this version does not know, left by another)."""
        transition = self.transitions.get(command_type)
        declared = transition.deadline_seconds if transition is not None else HOUR
        return operations.deadline_seconds.get(command_type, declared)

    def lifted_by(self, hold: Hold) -> list[str]:
        """The command types that may lift `hold`."""
        status = HOLD_STATUS[hold]
        return [t for t, tr in self.transitions.items() if tr.lifts and status in tr.allowed_from]

    def hold_on_begin(self, command_type: str, hold: Hold | None) -> Hold | None:
        """The instance's hold once `command_type` began on it."""
        return self.transitions[command_type].takes or hold

    def settle(
        self, command_type: str, before: InstanceStatus | None, hold: Hold | None, ending: Ending
    ) -> Rest:
        """The instance's status and hold after `command_type`, begun in `before` (None: it
        began by creating the instance), ended so; `hold` is the instance's hold before or
        since the command began (the same answer either way).

        Only a success of a command that lifts holds ends one; a held instance rests in its
        hold's status whatever else happened, so no failure leaves it where `start` or
        `restart` runs.
        """
        transition = self.transitions[command_type]
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
