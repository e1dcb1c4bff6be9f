"""Settings of the Kubernetes side, one group of the service's settings."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class KubernetesSettings(BaseModel):
    """How to reach the cluster and where tenants live."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kubeconfig: Path | None = Field(
        default=None,
        description="kubeconfig file; unset means in-cluster config, then ~/.kube/config",
    )
    context: str | None = Field(default=None, description="kubeconfig context to use")
    namespace: str = Field(default="odoo-tenants", description="namespace of tenant objects")
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
