"""provision: credentials, tenant database, objects, database initialisation, Odoo, health.

    credentials, database, objects      (handlers/creation.py)
    initialise   the init Job, awaited until Complete (Failed ends the command)
    deployment, rollout, health         (handlers/creation.py)

A failed provision keeps what it made (the instance is `error`): provisioning it again with the
same data converges from there, and delete removes everything.
"""

from typing import Any

from handlers.creation import made, making_steps, provisioned_fields, serving_steps
from handlers.declarations import Declaration, Queue
from handlers.jobs import finished
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Completed, Continue, HandlerContext, HandlerResult, Wait
from handlers.specs import instance_spec
from handlers.steps import Step, run_steps
from handlers.waits import WaitingFor
from k8s.conditions import job_failure, job_outcome
from k8s.kinds import JOB, uid_of
from k8s.spec import InstanceSpec
from k8s.workload import build_init_job, image_of
from messages.commands import ProvisionCommand
from messages.errors import PermanentError
from messages.events import ProvisionedData, ProvisionedEvent
from store.lifecycle import InstanceStatus, Transition
from store.records import InstanceShape
from store.settings import HOUR


class Provision:
    """The provision handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def __call__(self, command: ProvisionCommand, context: HandlerContext) -> HandlerResult:
        """Run (or resume) the provision's steps."""
        platform = self.platform
        spec = instance_spec(InstanceShape.asked(command.data))
        image_of(spec, platform.tenants)  # no image for the version: fail before any effect
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        waiting = run_steps(self._steps(spec, cluster), progress)
        if waiting is not None:
            return waiting
        progress.finish()
        return self._provisioned(command, spec)

    def _steps(self, spec: InstanceSpec, cluster: Cluster) -> tuple[Step, ...]:
        """The provision, in the order of the module's docstring."""
        platform = self.platform
        return (
            *making_steps(spec, platform, cluster),
            Step("initialise", lambda progress: self._initialise(spec, cluster, progress)),
            *serving_steps(spec, platform, cluster),
        )

    def _initialise(
        self, spec: InstanceSpec, cluster: Cluster, progress: Progress
    ) -> Continue | Wait | None:
        """Run the init Job once per operation; an earlier operation's failed Job is replaced."""
        namespace, name = self.platform.namespace, spec.names.init_job
        job = cluster.get(JOB, name)
        if job is not None and job_outcome(job) == "Failed":
            if uid_of(job) == progress.noted.get("init_job_uid"):
                raise self._init_failed(job, name)
            # Left by an earlier, failed provision: this one tries again with a new Job.
            cluster.delete(JOB, name)
            gone = WaitingFor.gone(JOB, name, f"failed Job {name} gone")
            waiting = progress.wait("initialise", gone)
            if waiting is not None:
                return waiting
            job = None
        if job is None:
            job = cluster.apply(JOB, build_init_job(spec, self.platform.tenants, namespace))
        if progress.noted.get("init_job_uid") != uid_of(job):
            progress.note(init_job_uid=uid_of(job))
        if job_outcome(job) is None:
            # The Job's activeDeadlineSeconds bounds this wait.
            waiting = progress.wait("initialise", finished(name))
            if waiting is not None:
                return waiting
            job = cluster.get(JOB, name)
            if job is None or job_outcome(job) is None:  # deleted meanwhile: look again later
                return progress.pause("initialise")
        if job_outcome(job) == "Failed":
            raise self._init_failed(job, name)
        return None

    def _init_failed(self, job: Any, name: str) -> PermanentError:
        namespace = self.platform.namespace
        return PermanentError(
            "database_init_failed",
            f"Job {namespace}/{name} failed ({job_failure(job)}); its logs say why: "
            f"kubectl logs -n {namespace} job/{name} --all-containers",
        )

    def _provisioned(self, command: ProvisionCommand, spec: InstanceSpec) -> Completed:
        data = ProvisionedData(**provisioned_fields(spec, self.platform))
        return Completed(
            ProvisionedEvent.caused_by(command, data),
            update=made(spec, self.platform, init_job=spec.names.init_job),
        )


S = InstanceStatus

# A failed provision may be provisioned again (same data; the handler checks the data).
PROVISION = Declaration(
    model=ProvisionCommand,
    queue=Queue.LONG,
    transition=Transition(
        frozenset({S.ERROR}),
        S.PROVISIONING,
        S.RUNNING,
        creates=True,
        deadline_seconds=2 * HOUR,
    ),
    event=ProvisionedEvent,
    # the init Job, then the server
    healthy_within=lambda waits: waits.init + waits.up,
    locks=True,
    handler=Provision,
)
