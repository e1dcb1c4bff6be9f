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
from handlers.jobs import current_replicas, run_job, take_backup
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Completed, Continue, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from handlers.waiting import health, rollout
from k8s.data_jobs import build_restore_job, job_name
from k8s.kinds import DEPLOYMENT
from k8s.spec import InstanceSpec
from k8s.workload import build_deployment, build_update_job
from messages.commands import UpgradeCommand
from messages.errors import PermanentError
from messages.events import UpgradedData, UpgradedEvent
from store.ledger import Ledger
from store.lifecycle import InstanceStatus, Transition
from store.records import InstanceUpdate
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
        made = take_backup(
            "pre-upgrade",
            old,
            backup_id,
            f"before the upgrade to {new.odoo_version}",
            platform,
            cluster,
            progress,
            context.ledger,
            rolled_back=True,
        )
        if isinstance(made, Continue):
            return made
        if CAUSE not in progress.noted:
            try:
                waiting = self._forward(old, new, replicas, cluster, progress, context)
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

    def _down(
        self, prefix: str, spec: InstanceSpec, cluster: Cluster, progress: Progress
    ) -> Continue | None:
        if not progress.done(f"{prefix}stop"):
            cluster.scale(spec.names.base, 0, absent_ok=True)
            progress.complete(f"{prefix}stop")
        return rollout(f"{prefix}stopped", 0, spec, self.platform, cluster, progress)

    def _up(
        self,
        prefix: str,
        spec: InstanceSpec,
        replicas: int,
        cluster: Cluster,
        progress: Progress,
    ) -> Continue | None:
        if not progress.done(f"{prefix}deployment"):
            manifest = build_deployment(
                spec, self.platform.tenants, self.platform.namespace, replicas=replicas
            )
            cluster.apply(DEPLOYMENT, manifest)
            progress.complete(f"{prefix}deployment")
        if replicas == 0:
            return None
        return rollout(f"{prefix}rollout", replicas, spec, self.platform, cluster, progress) or (
            health(f"{prefix}health", spec, self.platform, progress)
        )

    def _forward(
        self,
        old: InstanceSpec,
        new: InstanceSpec,
        replicas: int,
        cluster: Cluster,
        progress: Progress,
        context: HandlerContext,
    ) -> Continue | None:
        waiting = self._down("", old, cluster, progress)
        if waiting is not None:
            return waiting
        name = job_name(new, "update", str(context.operation_id))
        manifest = build_update_job(new, self.platform.tenants, self.platform.namespace, name)
        end = run_job("update-job", manifest, self.platform, cluster, progress)
        if isinstance(end, Continue):
            return end
        if not end.succeeded:
            raise PermanentError(
                "update_failed",
                f"update Job {self.platform.namespace}/{end.name} failed ({end.failure()})",
            )
        return self._up("", new, replicas, cluster, progress)

    def _back(
        self,
        old: InstanceSpec,
        new: InstanceSpec,
        replicas: int,
        backup_id: str,
        cluster: Cluster,
        progress: Progress,
        context: HandlerContext,
    ) -> Continue | None:
        """The old image, the pre-upgrade data, the old version serving again."""
        try:
            waiting = self._down("rollback-", new, cluster, progress)
            if waiting is not None:
                return waiting
            if not progress.done("rollback-image"):
                manifest = build_deployment(
                    old, self.platform.tenants, self.platform.namespace, replicas=0
                )
                cluster.apply(DEPLOYMENT, manifest)
                progress.complete("rollback-image")
            waiting = self._restore(old, backup_id, cluster, progress, context.ledger, context)
            if waiting is not None:
                return waiting
            return self._up("rollback-", old, replicas, cluster, progress)
        except PermanentError as failure:
            raise PermanentError(
                "rollback_failed",
                f"the upgrade to Odoo {new.odoo_version} failed ({progress.noted[CAUSE]}) and "
                f"so did the way back ({failure.code}: {failure}); backup {backup_id} holds "
                "the data from before the upgrade",
            ) from failure

    def _restore(
        self,
        spec: InstanceSpec,
        backup_id: str,
        cluster: Cluster,
        progress: Progress,
        ledger: Ledger,
        context: HandlerContext,
    ) -> Continue | None:
        backup = known_backup(ledger, backup_id, spec.instance_id, spec.odoo_version)
        manifest = build_restore_job(
            spec,
            self.platform.tenants,
            self.platform.namespace,
            name=job_name(spec, "rollback", str(context.operation_id)),
            location=backup.location,
            sha256=backup.sha256,
        )
        end = run_job("rollback-restore", manifest, self.platform, cluster, progress)
        if isinstance(end, Continue):
            return end
        if not end.succeeded or end.report is None or not end.report.ok:
            raise PermanentError(
                "restore_failed",
                f"restore Job {self.platform.namespace}/{end.name} failed ({end.failure()})",
            )
        return None


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
