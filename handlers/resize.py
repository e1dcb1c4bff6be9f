"""resize: the plan's CPU and memory on the Deployment, odoo.conf's workers and memory limits
in the Secret, and a bigger volume when storage grows (the ledger refuses a shrink).

    volume      PVC request raised, when storage grows (first: a refusal changes nothing else)
    config      Secret with odoo.conf re-rendered for the plan (the passwords read back)
    deployment  resources and the odoo.conf fingerprint on the pod template: a new pod
    rollout     (when the instance runs) its new pod Ready
    health      (when the instance runs) /web/health passes

A stopped or suspended instance is resized in place and stays down.
"""

from dataclasses import replace

from handlers.deadlines import up
from handlers.declarations import Declaration, Queue
from handlers.jobs import current_replicas
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from handlers.steps import Noted, Step, StepOutcome, run_steps
from handlers.waiting import health, rollout
from k8s.credentials import credentials_in
from k8s.kinds import DEPLOYMENT, PVC, SECRET
from k8s.spec import InstanceSpec
from k8s.workload import build_deployment, build_secret, build_volume
from messages.commands import PlanSpec, ResizeCommand
from messages.errors import PermanentError
from messages.events import ResizedData, ResizedEvent
from store.lifecycle import InstanceStatus, Transition
from store.records import InstanceUpdate
from store.settings import HOUR


def _replicas(noted: Noted) -> int:
    """The replicas the instance had when it was resized (noted by the `config` step)."""
    return int(noted.get("replicas", 0))


class Resize:
    """The resize handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def _steps(
        self, before: InstanceSpec, spec: InstanceSpec, cluster: Cluster
    ) -> tuple[Step, ...]:
        """The resize, in the order of the module's docstring."""
        platform, namespace = self.platform, self.platform.namespace

        def volume(_: Progress) -> StepOutcome:
            if spec.storage_gib > before.storage_gib:
                cluster.apply(PVC, build_volume(spec, platform.tenants, namespace))
            return None

        def config(_: Progress) -> StepOutcome:
            secret = cluster.get(SECRET, spec.names.secret)
            credentials = credentials_in(secret)
            if credentials is None:
                raise PermanentError(
                    "credentials_missing",
                    f"Secret {namespace}/{spec.names.secret} is missing or lost its passwords; "
                    "the instance cannot be resized (provision it again, or delete it)",
                    rolled_back=True,
                )
            cluster.apply(SECRET, build_secret(spec, credentials, platform.tenants, namespace))
            replicas = current_replicas(spec, platform, cluster)
            return {"replicas": replicas}

        def deployment(progress: Progress) -> StepOutcome:
            replicas = _replicas(progress.noted)
            deployment = build_deployment(spec, platform.tenants, namespace, replicas=replicas)
            cluster.apply(DEPLOYMENT, deployment)
            return None

        def new_pod(progress: Progress) -> StepOutcome:
            # To the replicas `config` found: known once it has run, so the wait is made here.
            replicas = _replicas(progress.noted)
            return rollout("rollout", replicas, spec, platform, cluster).run(progress)

        def running(noted: Noted) -> bool:
            return _replicas(noted) > 0

        return (
            Step("volume", volume),
            Step("config", config),
            Step("deployment", deployment),
            Step("rollout", new_pod).only_if(running),
            health("health", spec, platform).only_if(running),
        )

    def __call__(self, command: ResizeCommand, context: HandlerContext) -> HandlerResult:
        """Apply the new plan and, if the instance runs, wait for its new pod."""
        instance = context.admission.instance
        if instance is None:
            raise RuntimeError("resize admitted without its instance")
        platform = self.platform
        before = instance_spec(instance)
        plan = command.data.plan
        spec = replace(
            before,
            cpu_millicores=plan.cpu_millicores,
            memory_mib=plan.memory_mib,
            storage_gib=plan.storage_gib,
        )
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        waiting = run_steps(self._steps(before, spec, cluster), progress)
        if waiting is not None:
            return waiting
        progress.finish()
        # A plan without `backups` leaves the schedule as it was; the event reports the one kept.
        backups = plan.backups or instance.backup_plan
        reported = PlanSpec(
            cpu_millicores=plan.cpu_millicores,
            memory_mib=plan.memory_mib,
            storage_gib=plan.storage_gib,
            backups=backups,
        )
        data = ResizedData(instance_id=spec.instance_id, plan=reported)
        return Completed(
            ResizedEvent.caused_by(command, data),
            update=InstanceUpdate(
                cpu_millicores=plan.cpu_millicores,
                memory_mib=plan.memory_mib,
                storage_gib=plan.storage_gib,
                backup_plan=plan.backups,
            ),
        )


S = InstanceStatus

RESIZE = Declaration(
    model=ResizeCommand,
    queue=Queue.QUICK,
    transition=Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.SUSPENDED}),
        S.RESIZING,
        None,
        deadline_seconds=HOUR / 2,
    ),
    event=ResizedEvent,
    healthy_within=up,
    locks=True,
    handler=Resize,
)
