"""upgrade: to a newer Odoo, with a backup first and an automatic way back.

Admission has refused a version that is not newer, or has no image, before anything began
(store/admission.py): here the upgrade is possible as far as the store knows.

    pre-upgrade-*   a backup of the instance as it is (recorded like any other)
    stop, stopped   no pod uses the database during the update
    update-job      `odoo -u all --stop-after-init` in the new version's image
    deployment      the new image, at the replicas the instance had
    rollout, health (when it ran before) the new version serves

If the update Job fails, or the new version never becomes Ready or healthy, the upgrade rolls
back: the old image at zero replicas, the pre-upgrade backup restored, the old version started
and checked; then the command fails with `rolled_back: true` and the instance is as it was.
Only if the way back fails too does the instance end in `error`.
"""

from dataclasses import replace

from handlers.backups import known_backup, safety_backup_id
from handlers.declarations import Declaration, Queue
from handlers.jobs import backup_steps, current_replicas, job, job_end
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Completed, Continue, HandlerContext, HandlerResult, Wait
from handlers.specs import instance_spec
from handlers.steps import Check, Step, StepOutcome, run_steps
from handlers.waiting import health, rollout
from k8s.data_jobs import build_restore_job, job_name
from k8s.kinds import DEPLOYMENT
from k8s.spec import InstanceSpec
from k8s.workload import Manifest, build_deployment, build_update_job
from messages.commands import UpgradeCommand
from messages.errors import PermanentError
from messages.events import UpgradedData, UpgradedEvent
from store.lifecycle import InstanceStatus, Transition
from store.records import InstanceUpdate
from store.retention import BackupKind
from store.settings import HOUR

CAUSE = "rollback_cause"


class Upgrade:
    """The upgrade handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def __call__(self, command: UpgradeCommand, context: HandlerContext) -> HandlerResult:
        """Back up, update, switch images; roll back on failure."""
        instance = context.admission.instance
        if instance is None or context.operation_id is None:
            raise RuntimeError("upgrade admitted without its instance")
        platform = self.platform
        old = instance_spec(instance)
        new = replace(old, odoo_version=command.data.odoo_version)
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        if "replicas_before" not in progress.noted:
            progress.note(replicas_before=current_replicas(old, platform, cluster))
        replicas = int(progress.noted["replicas_before"])
        backup_id = safety_backup_id(context.operation_id, "pre-upgrade")
        backup = backup_steps(
            "pre-upgrade",
            old,
            backup_id,
            f"before the upgrade to {new.odoo_version}",
            platform,
            cluster,
            context.ledger,
            kind=BackupKind.SAFETY,
            rolled_back=True,
        )
        waiting = run_steps(backup, progress)
        if waiting is not None:
            return waiting
        if CAUSE not in progress.noted:
            try:
                forward = self._forward(old, new, replicas, cluster, progress.operation_id)
                waiting = run_steps(forward, progress)
            except PermanentError as failure:
                progress.note(**{CAUSE: f"{failure.code}: {failure}"})
            else:
                if waiting is not None:
                    return waiting
        if CAUSE in progress.noted:
            waiting = self._back(old, new, replicas, backup_id, cluster, progress, context)
            if waiting is not None:
                return waiting
            raise PermanentError(
                "upgrade_failed",
                f"the upgrade to Odoo {new.odoo_version} failed ({progress.noted[CAUSE]}); "
                f"rolled back to Odoo {old.odoo_version} with the data of backup {backup_id}",
                rolled_back=True,
            )
        progress.finish()
        data = UpgradedData(
            instance_id=old.instance_id,
            from_version=old.odoo_version,
            to_version=new.odoo_version,
        )
        return Completed(
            UpgradedEvent.caused_by(command, data),
            update=InstanceUpdate(odoo_version=new.odoo_version),
        )

    def _down(self, prefix: str, spec: InstanceSpec, cluster: Cluster) -> tuple[Step, ...]:
        """No pod left that uses the database."""

        def stop(_: Progress) -> StepOutcome:
            cluster.scale(spec.names.base, 0, absent_ok=True)
            return None

        return (
            Step(f"{prefix}stop", stop),
            rollout(f"{prefix}stopped", 0, spec, self.platform, cluster),
        )

    def _up(
        self, prefix: str, spec: InstanceSpec, replicas: int, cluster: Cluster
    ) -> tuple[Step, ...]:
        """`spec`'s image at `replicas`, and (if any) serving."""

        def deployment(_: Progress) -> StepOutcome:
            manifest = build_deployment(
                spec, self.platform.tenants, self.platform.namespace, replicas=replicas
            )
            cluster.apply(DEPLOYMENT, manifest)
            return None

        serving = (
            rollout(f"{prefix}rollout", replicas, spec, self.platform, cluster),
            health(f"{prefix}health", spec, self.platform),
        )
        return (Step(f"{prefix}deployment", deployment), *(serving if replicas > 0 else ()))

    def _forward(
        self,
        old: InstanceSpec,
        new: InstanceSpec,
        replicas: int,
        cluster: Cluster,
        operation_id: str,
    ) -> tuple[Step | Check, ...]:
        """Stop, update the database, start the new version."""
        name = job_name(new, "update", operation_id)
        manifest = build_update_job(new, self.platform.tenants, self.platform.namespace, name)

        def updated(progress: Progress) -> None:
            end = job_end("update-job", progress.noted)
            if not end.succeeded:
                raise PermanentError(
                    "update_failed",
                    f"update Job {self.platform.namespace}/{end.name} failed ({end.failure()})",
                )

        return (
            *self._down("", old, cluster),
            job("update-job", lambda _: manifest, new, self.platform, cluster),
            Check(updated),
            *self._up("", new, replicas, cluster),
        )

    def _back(
        self,
        old: InstanceSpec,
        new: InstanceSpec,
        replicas: int,
        backup_id: str,
        cluster: Cluster,
        progress: Progress,
        context: HandlerContext,
    ) -> Continue | Wait | None:
        """The old image, the pre-upgrade data, the old version serving again."""
        try:
            back = self._back_steps(old, new, replicas, backup_id, cluster, context)
            return run_steps(back, progress)
        except PermanentError as failure:
            raise PermanentError(
                "rollback_failed",
                f"the upgrade to Odoo {new.odoo_version} failed ({progress.noted[CAUSE]}) and "
                f"so did the way back ({failure.code}: {failure}); backup {backup_id} holds "
                "the data from before the upgrade",
            ) from failure

    def _back_steps(
        self,
        old: InstanceSpec,
        new: InstanceSpec,
        replicas: int,
        backup_id: str,
        cluster: Cluster,
        context: HandlerContext,
    ) -> tuple[Step | Check, ...]:
        """Stop, the old image, the pre-upgrade backup restored, the old version started."""
        namespace = self.platform.namespace

        def image(_: Progress) -> StepOutcome:
            manifest = build_deployment(old, self.platform.tenants, namespace, replicas=0)
            cluster.apply(DEPLOYMENT, manifest)
            return None

        def restore(_: Progress) -> Manifest:
            backup = known_backup(context.ledger, backup_id, old.instance_id, old.odoo_version)
            # The pre-upgrade backup of this operation left the Job's access in place.
            return build_restore_job(
                old,
                self.platform.tenants,
                self.platform.backups.settings,
                namespace,
                name=job_name(old, "rollback", str(context.operation_id)),
                location=backup.location,
                sha256=backup.sha256,
            )

        def restored(progress: Progress) -> None:
            end = job_end("rollback-restore", progress.noted)
            if not end.succeeded or end.report is None or not end.report.ok:
                raise PermanentError(
                    "restore_failed",
                    f"restore Job {namespace}/{end.name} failed ({end.failure()})",
                )

        return (
            *self._down("rollback-", new, cluster),
            Step("rollback-image", image),
            job("rollback-restore", restore, old, self.platform, cluster),
            Check(restored),
            *self._up("rollback-", old, replicas, cluster),
        )


S = InstanceStatus

UPGRADE = Declaration(
    model=UpgradeCommand,
    queue=Queue.LONG,
    transition=Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED}),
        S.UPGRADING,
        None,
        deadline_seconds=8 * HOUR,
    ),
    event=UpgradedEvent,
    # a backup, down, the update Job, up; and the way back: down, restore, up
    healthy_within=lambda waits: (
        waits.data_job + waits.down + waits.init + waits.up + waits.down + waits.data_job + waits.up
    ),
    locks=True,
    handler=Upgrade,
)
