"""Builds the Kubernetes API client from settings and checks that the cluster answers and that
the credentials hold the permissions the handlers need in the tenant namespace."""

from dataclasses import dataclass
from typing import TypeAlias

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from k8s.permissions import CONSUMER_PERMISSIONS, Permission, Rule, missing
from k8s.settings import KubernetesSettings

KubernetesApi: TypeAlias = client.ApiClient
"""The API client, as layers that may not import the kubernetes package name it."""


class ClusterUnavailableError(Exception):
    """No usable kubeconfig, or the API server did not answer."""


@dataclass(frozen=True)
class ClusterInfo:
    """What the service learned about the cluster at start-up."""

    server: str
    version: str
    missing_permissions: tuple[str, ...]
    """Needed in the tenant namespace and not granted (see k8s/permissions.py)."""
    rules_incomplete: bool
    """The API server could not list every rule (e.g. a webhook authorizer): `missing` may
    name permissions that are in fact granted."""


def api_client(settings: KubernetesSettings) -> client.ApiClient:
    """Load credentials (kubeconfig from settings, else in-cluster, else ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        if settings.kubeconfig is not None:
            config.load_kube_config(
                config_file=str(settings.kubeconfig),
                context=settings.context,
                client_configuration=configuration,
            )
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                config.load_kube_config(
                    context=settings.context, client_configuration=configuration
                )
    except (ConfigException, OSError) as error:
        raise ClusterUnavailableError(f"no usable Kubernetes configuration: {error}") from error
    return client.ApiClient(configuration)


def describe_cluster(
    api: client.ApiClient,
    settings: KubernetesSettings,
    needed: tuple[Permission, ...] = CONSUMER_PERMISSIONS,
) -> ClusterInfo:
    """Ask the API server for its version and which of the `needed` permissions in the tenant
    namespace these credentials lack (a SelfSubjectRulesReview: any identity may ask it)."""
    timeout = settings.request_timeout_seconds
    server = str(api.configuration.host)
    review = client.V1SelfSubjectRulesReview(
        spec=client.V1SelfSubjectRulesReviewSpec(namespace=settings.namespace)
    )
    try:
        version = client.VersionApi(api).get_code(_request_timeout=timeout)
        answer = client.AuthorizationV1Api(api).create_self_subject_rules_review(
            review, _request_timeout=timeout
        )
    except client.ApiException as error:
        raise ClusterUnavailableError(
            f"Kubernetes API at {server} answered {error.status} {error.reason}"
        ) from error
    except urllib3.exceptions.HTTPError as error:
        raise ClusterUnavailableError(
            f"cannot reach the Kubernetes API at {server}: {error}"
        ) from error
    status = answer.status
    rules = [
        Rule(
            groups=frozenset(rule.api_groups or ()),
            resources=frozenset(rule.resources or ()),
            verbs=frozenset(rule.verbs or ()),
            names_only=bool(rule.resource_names),
        )
        for rule in (status.resource_rules if status is not None else None) or ()
    ]
    return ClusterInfo(
        server=server,
        version=str(version.git_version),
        missing_permissions=tuple(missing(rules, needed)),
        rules_incomplete=bool(status is not None and status.incomplete),
    )
