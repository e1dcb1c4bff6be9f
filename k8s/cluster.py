"""Builds the Kubernetes API client from settings and checks that the cluster answers."""

from dataclasses import dataclass
from typing import TypeAlias

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

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
    namespace_exists: bool


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


def describe_cluster(api: client.ApiClient, settings: KubernetesSettings) -> ClusterInfo:
    """Ask the API server for its version and whether the tenant namespace exists."""
    timeout = settings.request_timeout_seconds
    server = str(api.configuration.host)
    try:
        version = client.VersionApi(api).get_code(_request_timeout=timeout)
        namespaces = client.CoreV1Api(api).list_namespace(
            field_selector=f"metadata.name={settings.namespace}", _request_timeout=timeout
        )
    except client.ApiException as error:
        raise ClusterUnavailableError(
            f"Kubernetes API at {server} answered {error.status} {error.reason}"
        ) from error
    except urllib3.exceptions.HTTPError as error:
        raise ClusterUnavailableError(
            f"cannot reach the Kubernetes API at {server}: {error}"
        ) from error
    return ClusterInfo(
        server=server, version=str(version.git_version), namespace_exists=bool(namespaces.items)
    )
