"""Where backups go: the S3 endpoint, bucket and prefix, the service's own credentials, and the
key that seals every archive before it leaves the cluster."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

PREFIX_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class ObjectStorageSettings(BaseModel):
    """The object storage that holds backups (`INSTANCE_SERVICE_BACKUPS__*`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_url: str | None = Field(
        default=None,
        description="S3 API endpoint, e.g. https://s3.example.net (unset: AWS's own for the "
        "region)",
    )
    job_endpoint_url: str | None = Field(
        default=None,
        description="the endpoint as the data Jobs' pods reach it, when it differs from the "
        "service's (unset: endpoint_url)",
    )
    region: str = Field(default="us-east-1", description="the bucket's region")
    addressing_style: Literal["path", "virtual"] = Field(
        default="path", description="bucket in the path (most S3-compatible servers) or host"
    )
    bucket: str = Field(
        default="instance-service-backups",
        min_length=3,
        max_length=63,
        description="the bucket every tenant's backups go to, each under its own prefix",
    )
    prefix: str = Field(
        default="backups",
        pattern=PREFIX_PATTERN,
        description="first part of every key: <prefix>/<instance_id>/<backup_id>.tar.tink",
    )
    import_bucket: str = Field(
        default="instance-service-imports",
        min_length=3,
        max_length=63,
        description="the bucket customers' Odoo database-manager archives are uploaded to for "
        "`import` (read with the service's own key, copied into the new instance's prefix)",
    )
    access_key_id: str | None = Field(
        default=None,
        description="the service's own access key: creates the tenants' scoped users, checks "
        "and prunes backups; never given to a Job",
    )
    secret_access_key: SecretStr | None = Field(default=None, description="its secret")
    tenant_user_prefix: str = Field(
        default="instance-service-tenant-",
        pattern=r"^[a-z0-9][a-z0-9._-]{0,31}$",
        description="the server's users made for tenants' Jobs are named <this><instance key>",
    )
    keyset: SecretStr | None = Field(
        default=None,
        description="Tink keyset (JSON) that seals archives: `instance-service backups keyset "
        "new` makes one, `... rotate` adds a new primary key; keep a copy off the cluster",
    )
    keyset_secret: str = Field(
        default="instance-service-backup-keyset",
        description="Secret in the tenant namespace the service writes the keyset to for the "
        "data Jobs",
    )
    part_size_mib: int = Field(
        default=16, ge=5, le=512, description="multipart upload part size (S3's minimum is 5)"
    )

    @field_validator("endpoint_url", "job_endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL")
        return value

    @property
    def jobs_endpoint(self) -> str | None:
        """The endpoint the data Jobs use."""
        return self.job_endpoint_url or self.endpoint_url

    def configured(self) -> str | None:
        """What is missing for backups to run, or None."""
        missing = [
            f"INSTANCE_SERVICE_BACKUPS__{name.upper()}"
            for name, value in (
                ("access_key_id", self.access_key_id),
                ("secret_access_key", self.secret_access_key),
                ("keyset", self.keyset),
            )
            if value is None
        ]
        if not missing:
            return None
        return (
            f"{' and '.join(missing)} not set: backups go to object storage, sealed with a "
            "keyset (`python -m devstack env` prints the local stack's)"
        )
