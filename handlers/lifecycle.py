"""start, stop, restart, suspend, unsuspend, terminate, reactivate: replicas, rollouts, health.

    bring up    (start, unsuspend, reactivate)  scale to 1 -> rollout -> health
    take down   (stop, suspend, terminate)      scale to 0 -> rollout to no pods
    restart                                     scale to 1 -> new pod template -> rollout -> health

Taking down keeps every object and byte (terminate's "keep every byte" included); only the
pods go. A Deployment that does not exist is already down; bringing one up fails with a
message that says how to recover.
"""

from abc import ABC, abstractmethod
from datetime import UTC, datetime

from handlers.deadlines import down, up
from handlers.declarations import Declaration, Queue
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from handlers.steps import Step, StepOutcome, run_steps
from handlers.waiting import health, rollout
from k8s.spec import InstanceSpec
from messages.commands import (
    InstanceCommand,
    ReactivateCommand,
    RestartCommand,
    StartCommand,
    StopCommand,
    SuspendCommand,
    TerminateCommand,
    UnsuspendCommand,
)
from messages.errors import PermanentError
from messages.events import (
    Event,
    InstanceEventData,
    ReactivatedEvent,
    RestartedEvent,
    StartedEvent,
    StoppedEvent,
    SuspendedEvent,
    TerminatedEvent,
    UnsuspendedEvent,
)
from store.lifecycle import Hold, InstanceStatus, Transition
from store.settings import HOUR


class ReplicaHandler(ABC):
    """Common frame: the stored instance's spec, a cluster view, the operation's progress."""

    def __init__(self, platform: Platform, event: type[Event]) -> None:
        self.platform = platform
        self.event = event

    def __call__(self, command: InstanceCommand, context: HandlerContext) -> HandlerResult:
        """Run (or resume) the steps; the success event once they are all done."""
        instance = context.admission.instance
        if instance is None:
            raise RuntimeError(f"{command.type} admitted without its instance")
        spec = instance_spec(instance)
        cluster = self.platform.cluster()
        progress = Progress(command, context, self.platform.faults, cluster)
        waiting = run_steps(self.steps(spec, cluster), progress)
        if waiting is not None:
            return waiting
        progress.finish()
        return Completed(
            self.event.caused_by(command, InstanceEventData(instance_id=spec.instance_id))
        )

    @abstractmethod
    def steps(self, spec: InstanceSpec, cluster: Cluster) -> tuple[Step, ...]:
        """The command's steps, in order."""

    def scale_up(self, spec: InstanceSpec, cluster: Cluster, verb: str) -> Step:
        """One replica (the `scale` step); a missing Deployment is a permanent failure."""

        def run(_: Progress) -> StepOutcome:
            namespace = self.platform.namespace
            if not cluster.scale(spec.names.base, 1, absent_ok=True):
                raise PermanentError(
                    "missing_deployment",
                    f"Deployment {namespace}/{spec.names.base} does not exist, so there is "
                    f"nothing to {verb}; provision the instance again with the same data, or "
                    "delete it",
                )
            return None

        return Step("scale", run)


class BringUp(ReplicaHandler):
    """One ready, healthy pod: start, unsuspend, reactivate."""

    def steps(self, spec: InstanceSpec, cluster: Cluster) -> tuple[Step, ...]:
        """Scale to one, wait for it to be Ready, check its health."""
        return (
            self.scale_up(spec, cluster, "start"),
            rollout("rollout", 1, spec, self.platform, cluster),
            health("health", spec, self.platform),
        )


class TakeDown(ReplicaHandler):
    """No pods, everything else kept: stop, suspend, terminate."""

    def steps(self, spec: InstanceSpec, cluster: Cluster) -> tuple[Step, ...]:
        """Scale to zero and wait until no pod is left (none to wait for without a Deployment)."""

        def scale(_: Progress) -> StepOutcome:
            exists = cluster.scale(spec.names.base, 0, absent_ok=True)
            return {"deployment_absent": not exists}

        return (
            Step("scale", scale),
            rollout("rollout", 0, spec, self.platform, cluster).only_if(
                lambda noted: not noted.get("deployment_absent")  # nothing runs: already down
            ),
        )


class Restart(ReplicaHandler):
    """A new pod for the same template: restart (at one replica, whatever it had)."""

    def steps(self, spec: InstanceSpec, cluster: Cluster) -> tuple[Step, ...]:
        """Stamp the pod template once, then wait for the new pod and its health."""

        def restart(progress: Progress) -> StepOutcome:
            # Chosen once and noted before the patch: a re-run patches the same stamp, which
            # changes nothing, so a crash here never restarts the pods twice.
            stamp = progress.noted.get("restart_stamp")
            if stamp is None:
                stamp = datetime.now(UTC).isoformat()
                progress.note(restart_stamp=stamp)
            at = datetime.fromisoformat(str(stamp))
            cluster.restart(spec.names.base, at)
            return None

        return (
            self.scale_up(spec, cluster, "restart"),  # `error` may have left it at zero
            Step("restart", restart),
            rollout("rollout", 1, spec, self.platform, cluster),
            health("health", spec, self.platform),
        )


S = InstanceStatus

START = Declaration(
    model=StartCommand,
    queue=Queue.QUICK,
    transition=Transition(
        frozenset({S.STOPPED, S.RUNNING, S.DEGRADED, S.ERROR}),
        S.STARTING,
        S.RUNNING,
        deadline_seconds=HOUR / 2,
    ),
    event=StartedEvent,
    healthy_within=up,
    locks=True,
    handler=lambda platform: BringUp(platform, StartedEvent),
)


STOP = Declaration(
    model=StopCommand,
    queue=Queue.QUICK,
    transition=Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.ERROR}),
        S.STOPPING,
        S.STOPPED,
        deadline_seconds=HOUR / 2,
    ),
    event=StoppedEvent,
    healthy_within=down,
    locks=True,
    handler=lambda platform: TakeDown(platform, StoppedEvent),
)


RESTART = Declaration(
    model=RestartCommand,
    queue=Queue.QUICK,
    transition=Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.ERROR}),
        S.RESTARTING,
        S.RUNNING,
        deadline_seconds=HOUR / 2,
    ),
    event=RestartedEvent,
    healthy_within=up,
    locks=True,
    handler=lambda platform: Restart(platform, RestartedEvent),
)


# Billing may suspend whatever serves or could serve; a suspended instance stays suspended.
SUSPEND = Declaration(
    model=SuspendCommand,
    queue=Queue.QUICK,
    transition=Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.ERROR, S.SUSPENDED}),
        S.STOPPING,
        S.SUSPENDED,
        takes=Hold.SUSPENDED,
        deadline_seconds=HOUR / 2,
    ),
    event=SuspendedEvent,
    healthy_within=down,
    locks=True,
    handler=lambda platform: TakeDown(platform, SuspendedEvent),
)


# The predecessor could not leave `suspended`; unsuspend is its one way back to serving.
UNSUSPEND = Declaration(
    model=UnsuspendCommand,
    queue=Queue.QUICK,
    transition=Transition(
        frozenset({S.SUSPENDED, S.RUNNING, S.DEGRADED}),
        S.STARTING,
        S.RUNNING,
        lifts=True,
        deadline_seconds=HOUR / 2,
    ),
    event=UnsuspendedEvent,
    healthy_within=up,
    locks=True,
    handler=lambda platform: BringUp(platform, UnsuspendedEvent),
)


# Terminate stops serving and keeps every byte; reactivate is its way back.
TERMINATE = Declaration(
    model=TerminateCommand,
    queue=Queue.QUICK,
    transition=Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.SUSPENDED, S.ERROR, S.TERMINATED}),
        S.STOPPING,
        S.TERMINATED,
        takes=Hold.TERMINATED,
        deadline_seconds=HOUR / 2,
    ),
    event=TerminatedEvent,
    healthy_within=down,
    locks=True,
    handler=lambda platform: TakeDown(platform, TerminatedEvent),
)


REACTIVATE = Declaration(
    model=ReactivateCommand,
    queue=Queue.QUICK,
    transition=Transition(
        frozenset({S.TERMINATED}),
        S.STARTING,
        S.RUNNING,
        lifts=True,
        deadline_seconds=HOUR / 2,
    ),
    event=ReactivatedEvent,
    healthy_within=up,
    locks=True,
    handler=lambda platform: BringUp(platform, ReactivatedEvent),
)
