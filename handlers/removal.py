"""Removing everything an instance has, in an order that never strands a running pod.

delete runs these steps for good; a clone or an import that failed runs them (named `undo-...`)
to leave nothing behind:

    workload     Deployment deleted; workload-gone: watched until gone
    exposure     Ingress, Service, both NetworkPolicies, every Job of the instance, its customer
                 domains' Certificates and their TLS Secrets deleted
    access       the instance's object-storage identity removed, its backup-access Secret too,
                 and any object copied in for its Jobs (`incoming`)
    volume       PVC deleted; volume-gone: watched until gone   (not with keep_data)
    database     tenant database and role dropped          (not with keep_data)
    credentials  Secret deleted                            (not with keep_data)
"""

from collections.abc import Sequence

from handlers.jobs import storage_call
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Continue, Wait
from handlers.steps import Check, Step, StepOutcome, run_steps
from handlers.waiting import watch_step
from handlers.waits import WaitingFor
from k8s.kinds import (
    CERTIFICATE,
    DEPLOYMENT,
    INGRESS,
    JOB,
    NETWORK_POLICY,
    PVC,
    SECRET,
    SERVICE,
    Kind,
    Object,
    name_of,
)
from k8s.spec import InstanceSpec
from messages.errors import PermanentError
from objectstore.locations import ObjectLocation


def gone_step(
    step: str, kind: Kind[Object], name: str, platform: Platform, cluster: Cluster
) -> Step:
    """Wait until the object is gone, within the ready deadline."""
    namespace = platform.namespace
    deadline = platform.kubernetes.ready_deadline_seconds
    gone = WaitingFor.gone(kind, name, f"{kind} {name} gone")

    def expired() -> PermanentError:
        left = cluster.get(kind, name)
        finalizers = ", ".join(getattr(left.metadata, "finalizers", None) or []) if left else ""
        return PermanentError(
            "not_deleted",
            f"{kind} {namespace}/{name} still exists {deadline:g} s after its deletion "
            f"(finalizers: {finalizers or 'none'}); a pod that still uses it keeps it",
        )

    return watch_step(step, deadline, [gone], cluster, expired)


def removal_steps(
    spec: InstanceSpec,
    platform: Platform,
    cluster: Cluster,
    *,
    keep_data: bool = False,
    incoming: Sequence[ObjectLocation] = (),
    prefix: str = "",
) -> tuple[Step, ...]:
    """The steps of the module's docstring, each named `<prefix><step>`."""
    names = spec.names

    def workload(_: Progress) -> StepOutcome:
        cluster.delete(DEPLOYMENT, names.base)
        return None

    def exposure(_: Progress) -> StepOutcome:
        for kind, name in (
            (INGRESS, names.base),
            (SERVICE, names.base),
            (NETWORK_POLICY, names.base),
            (NETWORK_POLICY, names.job_policy),
        ):
            cluster.delete(kind, name)
        # Every Job of the instance (init, update, backup, restore, import): their pods would
        # keep the data volume from going.
        ours = f"app.kubernetes.io/instance={names.base}"
        for job in cluster.objects(JOB, selector=ours):
            cluster.delete(JOB, name_of(job))
        # The customer domains' Certificates and their TLS Secrets (cert-manager does not own
        # the Secrets; Secrets are never listed, so each is deleted by name: the ones the
        # Certificates found name, and those of the domains the instance is known to have).
        tls = {names.certificate_secret(domain) for domain in spec.domains}
        for certificate in cluster.objects(CERTIFICATE, selector=ours):
            cluster.delete(CERTIFICATE, certificate["metadata"]["name"])
            tls.add(certificate["spec"]["secretName"])
        for secret in sorted(tls):
            cluster.delete(SECRET, secret)
        return None

    def access(_: Progress) -> StepOutcome:
        storage = platform.backups
        storage_call(
            f"access of instance {spec.instance_id}",
            lambda: storage.revoke(spec.instance_id),
            rolled_back=False,
        )
        if incoming:
            storage_call(
                f"objects copied in for instance {spec.instance_id}",
                lambda: storage.remove(list(incoming)),
                rolled_back=False,
            )
        cluster.delete(SECRET, names.backup_access)
        return None

    def volume(_: Progress) -> StepOutcome:
        cluster.delete(PVC, names.volume)
        return None

    def database(_: Progress) -> StepOutcome:
        platform.databases.drop(names.role, names.database)
        return None

    def credentials(_: Progress) -> StepOutcome:
        cluster.delete(SECRET, names.secret)
        return None

    data = (
        Step(f"{prefix}volume", volume),
        # The PVC protection finalizer holds the claim until no pod uses it.
        gone_step(f"{prefix}volume-gone", PVC, names.volume, platform, cluster),
        Step(f"{prefix}database", database),
        Step(f"{prefix}credentials", credentials),
    )
    return (
        Step(f"{prefix}workload", workload),
        gone_step(f"{prefix}workload-gone", DEPLOYMENT, names.base, platform, cluster),
        Step(f"{prefix}exposure", exposure),
        Step(f"{prefix}access", access),
        *(() if keep_data else data),
    )


FAILED = "failed"
"""What an operation that is being undone noted: the failure's code and message."""
UNDO = "undo-"


def run_or_undo(
    steps: Sequence[Step | Check],
    undo: Sequence[Step],
    progress: Progress,
    undone: str = "everything made for the new instance was removed",
) -> Continue | Wait | None:
    """Run `steps`; once one fails for good, run `undo` instead (this and every later delivery)
    and end the command with that failure, rolled back (`undone` says what the undo did). None:
    every step is done."""
    failure = progress.noted.get(FAILED)
    if failure is None:
        try:
            return run_steps(steps, progress)
        except PermanentError as error:
            failure = {"code": error.code, "message": str(error)}
            progress.note(**{FAILED: failure})
    waiting = run_steps(undo, progress)
    if waiting is not None:
        return waiting
    raise PermanentError(
        str(failure["code"]),
        f"{failure['message']}; {undone}",
        rolled_back=True,
    )
