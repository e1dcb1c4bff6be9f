"""provision: credentials, tenant database, objects, database initialisation, Odoo, health.

    credentials  Secret with generated passwords (read back, never regenerated, on a re-run)
    database     tenant role and database, with the password from the Secret
    objects      PVC, Service, NetworkPolicy, Ingress (the Service before any pod: see below)
    initialise   the init Job, awaited until Complete (Failed ends the command)
    deployment   Odoo with one replica
    rollout      awaited until its pod is Ready (ready deadline)
    health       /web/health over the Service (health deadline)

A failed provision keeps what it made (the instance is `error`): provisioning it again with the
same data converges from there, and delete removes everything.
"""

from typing import Any

from handlers.declarations import Declaration, Queue
from handlers.jobs import finished
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Completed, Continue, HandlerContext, HandlerResult, Wait
from handlers.specs import instance_spec
from handlers.steps import Step, StepOutcome, run_steps
from handlers.waiting import health, rollout
from handlers.waits import WaitingFor
from k8s.conditions import job_failure, job_outcome
from k8s.credentials import credentials_in, generate_credentials
from k8s.exposure import build_ingress, build_service, host_of
from k8s.kinds import DEPLOYMENT, INGRESS, JOB, NETWORK_POLICY, PVC, SECRET, SERVICE, uid_of
from k8s.network import build_network_policies
from k8s.spec import InstanceSpec, TenantCredentials
from k8s.workload import build_deployment, build_init_job, build_secret, build_volume, image_of
from messages.commands import ProvisionCommand
from messages.errors import PermanentError
from messages.events import ProvisionedData, ProvisionedEvent, SecretReference
from store.lifecycle import InstanceStatus, Transition
from store.records import InstanceShape, InstanceUpdate
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
        platform, namespace = self.platform, self.platform.namespace

        def secret(_: Progress) -> StepOutcome:
            existing = cluster.get(SECRET, spec.names.secret)
            credentials = credentials_in(existing) or generate_credentials()
            cluster.apply(SECRET, build_secret(spec, credentials, platform.tenants, namespace))
            return None

        def database(_: Progress) -> StepOutcome:
            credentials = self._credentials(cluster, spec)
            names = spec.names
            platform.databases.ensure(names.role, names.database, credentials.database_password)
            return None

        def objects(_: Progress) -> StepOutcome:
            # The Service goes first: the EndpointSlice controller finds a pod's Services in its
            # cache when the pod becomes Ready, and may miss one that arrives after the pod.
            cluster.apply(SERVICE, build_service(spec, namespace))
            for policy in build_network_policies(spec, platform.tenants, namespace):
                cluster.apply(NETWORK_POLICY, policy)
            cluster.apply(INGRESS, build_ingress(spec, platform.tenants, namespace))
            cluster.apply(PVC, build_volume(spec, platform.tenants, namespace))
            return None

        def deployment(_: Progress) -> StepOutcome:
            cluster.apply(
                DEPLOYMENT, build_deployment(spec, platform.tenants, namespace, replicas=1)
            )
            return None

        return (
            Step("credentials", secret),
            Step("database", database),
            Step("objects", objects),
            Step("initialise", lambda progress: self._initialise(spec, cluster, progress)),
            Step("deployment", deployment),
            rollout("rollout", 1, spec, platform, cluster),
            health("health", spec, platform),
        )

    def _credentials(self, cluster: Cluster, spec: InstanceSpec) -> TenantCredentials:
        secret = cluster.get(SECRET, spec.names.secret)
        credentials = credentials_in(secret)
        if credentials is None:
            raise PermanentError(
                "credentials_missing",
                f"Secret {self.platform.namespace}/{spec.names.secret} vanished or lost its "
                "passwords during the provision; delete the instance and provision it again",
            )
        return credentials

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
        namespace, names = self.platform.namespace, spec.names
        url = f"https://{host_of(spec, self.platform.tenants)}"
        internal_url = names.internal_url(namespace)
        data = ProvisionedData(
            instance_id=spec.instance_id,
            url=url,
            internal_url=internal_url,
            odoo_version=spec.odoo_version,
            credentials_secret=SecretReference(namespace=namespace, name=names.secret),
        )
        kubernetes_names = {
            "namespace": namespace,
            "deployment": names.base,
            "service": names.base,
            "ingress": names.base,
            "network_policy": names.base,
            "secret": names.secret,
            "volume": names.volume,
            "init_job": names.init_job,
            "database": names.database,
            "role": names.role,
        }
        return Completed(
            ProvisionedEvent.caused_by(command, data),
            update=InstanceUpdate(
                url=url, internal_url=internal_url, kubernetes_names=kubernetes_names
            ),
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
