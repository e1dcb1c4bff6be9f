"""SeaweedFS as the stack's object storage: `weed mini` (master, volume, filer and S3 gateway in
one process) on loopback, its admin identity, and the backup and import buckets.

Built from the Go module proxy by devstack/build-module.sh and cached by version. The admin
identity comes from the environment at start (SeaweedFS's own way for a first identity); with
no identity at all its S3 API would be open to anyone, so it is always given one. Tenants'
scoped users are made by the service through the IAM API on the same port
(objectstore/access.py), and kept by the filer across restarts.
"""

from pathlib import Path

from pydantic import SecretStr

from devstack import processes
from devstack.component import Health
from devstack.credentials import (
    BACKUP_BUCKET,
    IMPORT_BUCKET,
    S3_ADMIN_KEY_ID,
    Credentials,
    endpoints,
    load_or_create,
)
from devstack.gobuild import GoBuild
from devstack.layout import LOOPBACK, Layout
from objectstore.client import StorageRefusedError, StorageUnavailableError, s3_client
from objectstore.settings import ObjectStorageSettings
from objectstore.storage import BackupStorage

NAME = "seaweedfs"
READY_SECONDS = 90.0


BUILD = GoBuild(
    "seaweedfs", "github.com/seaweedfs/seaweedfs", "SEAWEEDFS_VERSION", ("weed=./weed",)
)


class SeaweedFS:
    """The S3 API on 127.0.0.1, backed by a directory of the stack's data."""

    name = "objectstore"
    builds = (BUILD,)

    def __init__(self, layout: Layout, credentials: Credentials) -> None:
        self.layout = layout
        self.credentials = credentials
        self.data = layout.data / "seaweedfs"
        self.url = f"http://{LOOPBACK}:{layout.ports.s3}"

    def _command(self, weed: Path) -> list[str]:
        ports = self.layout.ports
        return [
            str(weed),
            "mini",
            f"-dir={self.data}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-master.peers=none",
            f"-master.port={ports.seaweed_master}",
            f"-master.port.grpc={ports.seaweed_master_grpc}",
            f"-volume.port={ports.seaweed_volume}",
            f"-volume.port.grpc={ports.seaweed_volume_grpc}",
            f"-filer.port={ports.seaweed_filer}",
            f"-filer.port.grpc={ports.seaweed_filer_grpc}",
            f"-s3.port={ports.s3}",
            f"-s3.port.grpc={ports.s3_grpc}",
            "-s3.iam.readOnly=false",  # the service makes tenants' users through the IAM API
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def storage(self, bucket: str = BACKUP_BUCKET) -> BackupStorage:
        """A bucket (the backups' unless told) with the admin identity."""
        client = s3_client(self.url, "us-east-1", S3_ADMIN_KEY_ID, self.credentials.s3_admin)
        return BackupStorage(client, bucket)

    def _ready(self) -> bool:
        try:
            for bucket in (BACKUP_BUCKET, IMPORT_BUCKET):
                self.storage(bucket).ensure_bucket()
        except (StorageUnavailableError, StorageRefusedError):
            return False
        return True

    def up(self) -> None:
        """Start `weed mini` unless it runs, wait for its S3 API, make the backup and import
        buckets."""
        if processes.pid_of(self.layout, NAME) is None:
            weed = BUILD.build() / "weed"
            ports = self.layout.ports
            for port in (ports.s3, ports.seaweed_master, ports.seaweed_volume, ports.seaweed_filer):
                processes.ensure_port_free(port, "SeaweedFS")
            self.data.mkdir(parents=True, exist_ok=True)
            processes.start(
                self.layout,
                NAME,
                self._command(weed),
                env={
                    "AWS_ACCESS_KEY_ID": S3_ADMIN_KEY_ID,
                    "AWS_SECRET_ACCESS_KEY": self.credentials.s3_admin,
                },
                cwd=self.data,
            )
        if not processes.wait_until(self._ready, READY_SECONDS, interval=0.5):
            raise processes.StackError(
                f"SeaweedFS's S3 API did not answer on {self.url}\n"
                f"{processes.log_tail(self.layout, NAME)}"
            )

    def down(self) -> None:
        """Stop it (its data stays)."""
        processes.stop(self.layout, NAME)

    def health(self) -> list[Health]:
        """Whether the S3 API answers the admin identity."""
        return [Health(NAME, self._ready(), f"S3 API {self.url}, bucket {BACKUP_BUCKET}")]


def backup_settings(layout: Layout, **changes: object) -> ObjectStorageSettings:
    """The service's backup settings for this stack (`changes`: e.g. another prefix)."""
    secrets = load_or_create(layout)
    found = endpoints(layout, secrets)
    values: dict[str, object] = {
        "endpoint_url": found.s3_url,
        "bucket": found.backup_bucket,
        "import_bucket": found.import_bucket,
        "access_key_id": found.s3_admin_key_id,
        "secret_access_key": SecretStr(found.s3_admin_secret),
        "keyset": SecretStr(found.backup_keyset),
    }
    values.update(changes)
    return ObjectStorageSettings.model_validate(values)
