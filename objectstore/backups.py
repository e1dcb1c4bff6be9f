"""The service's one handle on backup storage: its bucket and its tenants' scoped identities."""

from dataclasses import dataclass

from objectstore.access import AccessKey, IamTenantAccess, TenantAccess
from objectstore.client import iam_client, s3_client
from objectstore.locations import (
    ObjectLocation,
    backup_location,
    incoming_location,
    instance_prefix,
)
from objectstore.settings import ObjectStorageSettings
from objectstore.storage import BackupStorage, StoredObject


class StorageSettingsError(Exception):
    """Backups cannot run with these settings."""


@dataclass(frozen=True)
class ObjectBackups:
    """Backup objects and the access the data Jobs get to them."""

    settings: ObjectStorageSettings
    storage: BackupStorage
    access: TenantAccess

    @classmethod
    def connect(cls, settings: ObjectStorageSettings) -> "ObjectBackups":
        """Clients for the configured endpoint with the service's own key."""
        problem = settings.configured()
        if problem is not None or settings.access_key_id is None:
            raise StorageSettingsError(problem)
        secret = settings.secret_access_key.get_secret_value() if settings.secret_access_key else ""
        s3 = s3_client(
            settings.endpoint_url,
            settings.region,
            settings.access_key_id,
            secret,
            settings.addressing_style,
        )
        iam = iam_client(settings.endpoint_url, settings.region, settings.access_key_id, secret)
        return cls(
            settings,
            BackupStorage(s3, settings.bucket),
            IamTenantAccess(iam, settings.bucket, settings.prefix, settings.tenant_user_prefix),
        )

    @property
    def keyset(self) -> str:
        """The keyset the data Jobs seal and open with."""
        if self.settings.keyset is None:
            raise StorageSettingsError(self.settings.configured())
        return self.settings.keyset.get_secret_value()

    def location(self, instance_id: str, backup_id: str) -> ObjectLocation:
        """Where the backup `backup_id` of the instance goes."""
        return backup_location(self.settings.bucket, self.settings.prefix, instance_id, backup_id)

    def incoming(self, instance_id: str, name: str) -> ObjectLocation:
        """Where an object copied in for the instance's next data Job goes."""
        return incoming_location(self.settings.bucket, self.settings.prefix, instance_id, name)

    def archive(self, key: str) -> ObjectLocation:
        """An object of the import bucket."""
        return ObjectLocation(self.settings.import_bucket, key)

    def copy(self, source: ObjectLocation, target: ObjectLocation) -> None:
        """Copy an object on the server, with the service's key."""
        self.storage.copy(source, target)

    def instance_prefix(self, instance_id: str) -> str:
        """Every key of the instance starts with this."""
        return instance_prefix(self.settings.prefix, instance_id)

    def grant(self, instance_id: str, current_key_id: str | None) -> AccessKey | None:
        """The instance's scoped key: None keeps `current_key_id`, else a new one."""
        return self.access.grant(instance_id, current_key_id)

    def revoke(self, instance_id: str) -> None:
        """Remove the instance's identity."""
        self.access.revoke(instance_id)

    def size(self, location: ObjectLocation) -> int | None:
        """The object's size, or None."""
        return self.storage.size(location)

    def describe(self, location: ObjectLocation) -> StoredObject | None:
        """The object's size and checksum tag, or None."""
        return self.storage.describe(location)

    def remove(self, locations: list[ObjectLocation]) -> None:
        """Delete objects."""
        self.storage.remove(locations)

    def abort_uploads(self, prefix: str) -> int:
        """Abort unfinished uploads under `prefix`."""
        return self.storage.abort_uploads(prefix)
