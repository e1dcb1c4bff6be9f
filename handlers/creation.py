"""The steps every command that makes an instance shares, and what its success reports.

provision, clone and import each make an instance the same way around their own data step:

    credentials  Secret with generated passwords (read back, never regenerated, on a re-run)
    database     tenant role and database, with the password from the Secret
    objects      PVC, Service, NetworkPolicies, Ingress (the Service before any pod: see below)
    ...          the command's own data step (init Job, restore of a copy, import)
    deployment   Odoo with one replica
    rollout      awaited until its pod is Ready (ready deadline)
    health       /web/health over the Service (health deadline)

and report the same `provisioned` fields (a clone adds its own).
"""

from typing import Any

from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.steps import Step, StepOutcome
from handlers.waiting import health, rollout
from k8s.credentials import credentials_in, generate_credentials
from k8s.exposure import build_ingress, build_service, host_of
from k8s.kinds import DEPLOYMENT, INGRESS, NETWORK_POLICY, PVC, SECRET, SERVICE
from k8s.network import build_network_policies
from k8s.spec import InstanceSpec, TenantCredentials
from k8s.workload import build_deployment, build_secret, build_volume
from messages.errors import PermanentError
from messages.events import SecretReference
from store.records import InstanceUpdate


def making_steps(spec: InstanceSpec, platform: Platform, cluster: Cluster) -> tuple[Step, ...]:
    """credentials, database, objects: what the instance's data step needs."""
    namespace = platform.namespace

    def secret(_: Progress) -> StepOutcome:
        existing = cluster.get(SECRET, spec.names.secret)
        credentials = credentials_in(existing) or generate_credentials()
        cluster.apply(SECRET, build_secret(spec, credentials, platform.tenants, namespace))
        return None

    def database(_: Progress) -> StepOutcome:
        credentials = stored_credentials(spec, platform, cluster)
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

    return (
        Step("credentials", secret),
        Step("database", database),
        Step("objects", objects),
    )


def serving_steps(spec: InstanceSpec, platform: Platform, cluster: Cluster) -> tuple[Step, ...]:
    """deployment, rollout, health: the instance serves."""
    namespace = platform.namespace

    def deployment(_: Progress) -> StepOutcome:
        cluster.apply(DEPLOYMENT, build_deployment(spec, platform.tenants, namespace, replicas=1))
        return None

    return (
        Step("deployment", deployment),
        rollout("rollout", 1, spec, platform, cluster),
        health("health", spec, platform),
    )


def stored_credentials(
    spec: InstanceSpec, platform: Platform, cluster: Cluster
) -> TenantCredentials:
    """The passwords of the instance's Secret, which the `credentials` step made."""
    credentials = credentials_in(cluster.get(SECRET, spec.names.secret))
    if credentials is None:
        raise PermanentError(
            "credentials_missing",
            f"Secret {platform.namespace}/{spec.names.secret} vanished or lost its passwords "
            "while the instance was made; delete the instance and make it again",
        )
    return credentials


def provisioned_fields(spec: InstanceSpec, platform: Platform) -> dict[str, Any]:
    """The `provisioned` event's data of a new instance."""
    namespace, names = platform.namespace, spec.names
    return {
        "instance_id": spec.instance_id,
        "url": f"https://{host_of(spec, platform.tenants)}",
        "internal_url": names.internal_url(namespace),
        "odoo_version": spec.odoo_version,
        "credentials_secret": SecretReference(namespace=namespace, name=names.secret),
    }


def made(spec: InstanceSpec, platform: Platform, **extra: str) -> InstanceUpdate:
    """The store's record of the new instance: where it is served, what it is made of."""
    namespace, names = platform.namespace, spec.names
    fields = provisioned_fields(spec, platform)
    kubernetes_names = {
        "namespace": namespace,
        "deployment": names.base,
        "service": names.base,
        "ingress": names.base,
        "network_policy": names.base,
        "secret": names.secret,
        "volume": names.volume,
        "database": names.database,
        "role": names.role,
        **extra,
    }
    return InstanceUpdate(
        url=fields["url"], internal_url=fields["internal_url"], kubernetes_names=kubernetes_names
    )
