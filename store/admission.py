"""What a command asks, checked against the instance's record before anything begins.

The contract's rule "a refusal is a rejection": a command refused on its own data or on what the
store records (a version that is not newer or has no image, storage that would shrink, an unknown
backup, a backup id already used) is answered `command.rejected` here, in admission, before its
operation is recorded as begun, never `command.failed` from a handler that has begun. Checks of
the outside world (the cluster, the Jobs' archives) stay with the handlers.

    identity   commands that make an instance (provision, clone, import), before the status
               verdict: a different command for an existing instance, or a subdomain another
               instance holds, is `conflict` in any status
    record     after the status verdict, on an instance at rest: `invalid_data` or `conflict`;
               a clone's source and backup, an import's archive (its bucket is the service's
               import bucket and the object exists: the one look outside the store, through
               the `Archives` port, because a missing object is the command's own mistake);
               a customer's domain another instance holds (`conflict`), one more domain than
               an instance may have (`not_allowed_in_state`)
"""

from collections.abc import Collection
from typing import Protocol

from messages.commands import (
    AnyCommand,
    BackupCommand,
    CloneCommand,
    CreatingCommand,
    DomainAddCommand,
    ImportCommand,
    InstanceCommand,
    ProvisionCommand,
    ResizeCommand,
    RestoreCommand,
    UpgradeCommand,
)
from messages.errors import FieldProblem, MessageRejected, RejectionCode
from store.instances import asked_document, stored_asked
from store.lifecycle import InstanceStatus
from store.records import InstanceRecord
from store.snapshot import Snapshot

CLONABLE = frozenset({InstanceStatus.RUNNING, InstanceStatus.DEGRADED, InstanceStatus.STOPPED})
"""The statuses a clone's source may be in: serving or stopped, not held and not working."""


class Archives(Protocol):
    """The import bucket, as admission looks at it (objectstore's, adapted by the wiring)."""

    @property
    def bucket(self) -> str:
        """The bucket imports are read from."""

    def size(self, key: str) -> int | None:
        """The object's size, or None when it does not exist."""


def version_key(version: str) -> tuple[int, ...]:
    """ "17.0" -> (17, 0), for comparing Odoo versions."""
    return tuple(int(part) for part in version.split("."))


def rejection(
    command: AnyCommand | InstanceCommand, code: RejectionCode, message: str, *details: FieldProblem
) -> MessageRejected:
    """A refusal of `command`, to answer with `command.rejected`."""
    return MessageRejected(code, message, tuple(details), command.id, command.type)


def check_identity(
    snapshot: Snapshot, command: CreatingCommand, instance: InstanceRecord | None
) -> None:
    """A command that makes an instance is the instance's own (the same command type and data
    made it) and its subdomain is free."""
    row = snapshot.instances.get(instance.id) if instance is not None else None
    if row is not None and stored_asked(row["spec"]) != asked_document(command):
        raise rejection(
            command,
            RejectionCode.CONFLICT,
            f"instance {command.subject} exists, made by another command or other data",
        )
    if snapshot.subdomain_holder(command.data.subdomain, command.subject) is not None:
        raise rejection(
            command,
            RejectionCode.CONFLICT,
            f"subdomain '{command.data.subdomain}' belongs to another instance",
            FieldProblem("data.subdomain", "already taken"),
        )


def check_record(
    snapshot: Snapshot,
    command: AnyCommand,
    instance: InstanceRecord | None,
    versions_with_image: Collection[str] | None,
    archives: Archives | None = None,
    max_domains: int | None = None,
) -> None:
    """What the command asks is possible for the instance as recorded; MessageRejected if not.

    `versions_with_image`: the Odoo versions the service has an image for (None: not checked);
    `archives`: the import bucket (None: an import's archive is not looked for);
    `max_domains`: the most customer domains an instance may have (None: no limit).
    """
    if isinstance(command, ProvisionCommand | UpgradeCommand | ImportCommand):
        _check_image(command, command.data.odoo_version, versions_with_image)
    if isinstance(command, CloneCommand):
        _check_clone(snapshot, command, versions_with_image)
    if isinstance(command, ImportCommand):
        _check_archive(command, archives)
    if instance is None:
        return
    if isinstance(command, ResizeCommand):
        asked, has = command.data.plan.storage_gib, instance.storage_gib
        if asked < has:
            raise rejection(
                command,
                RejectionCode.INVALID_DATA,
                f"storage cannot shrink: the instance has {has} GiB, the plan asks {asked}",
                FieldProblem("data.plan.storage_gib", f"must be at least {has}"),
            )
    elif isinstance(command, UpgradeCommand):
        asked_version, has_version = command.data.odoo_version, instance.odoo_version
        if version_key(asked_version) <= version_key(has_version):
            raise rejection(
                command,
                RejectionCode.INVALID_DATA,
                f"Odoo {asked_version} is not newer than the instance's {has_version}",
                FieldProblem("data.odoo_version", f"must be newer than {has_version}"),
            )
    elif isinstance(command, BackupCommand):
        if command.data.backup_id in snapshot.backups:
            raise rejection(
                command,
                RejectionCode.CONFLICT,
                f"a backup with id {command.data.backup_id} exists already; choose a new id",
                FieldProblem("data.backup_id", "already used"),
            )
    elif isinstance(command, RestoreCommand):
        _check_restorable(snapshot, command, instance)
    elif isinstance(command, DomainAddCommand):
        _check_domain(snapshot, command, instance, max_domains)


def _check_domain(
    snapshot: Snapshot,
    command: DomainAddCommand,
    instance: InstanceRecord,
    max_domains: int | None,
) -> None:
    """No other instance holds the domain; one more stays within the instance's limit (adding
    a domain the instance has already is a repeat, within any limit)."""
    domain = command.data.domain
    holder = snapshot.domains.get(domain)
    if holder is not None and holder.instance_id != instance.id:
        raise rejection(
            command,
            RejectionCode.CONFLICT,
            f"domain {domain} belongs to another instance",
            FieldProblem("data.domain", "held by another instance"),
        )
    held = snapshot.domains_of(instance.id)
    if holder is None and max_domains is not None and len(held) >= max_domains:
        raise rejection(
            command,
            RejectionCode.NOT_ALLOWED_IN_STATE,
            f"instance {instance.id} has {len(held)} domains, the most it may have "
            f"({max_domains}, setting INSTANCE_SERVICE_DOMAINS__PER_INSTANCE); remove one first",
        )


def clone_version(snapshot: Snapshot, command: CloneCommand) -> str | None:
    """The Odoo version a clone runs: its backup's, else its source's (None: no source)."""
    backup_id = command.data.backup_id
    backup = snapshot.backups.get(backup_id) if backup_id is not None else None
    if backup is not None and backup.odoo_version is not None:
        return backup.odoo_version
    source = snapshot.instance(command.data.source_instance_id)
    return source.odoo_version if source is not None else None


def _check_clone(
    snapshot: Snapshot, command: CloneCommand, versions_with_image: Collection[str] | None
) -> None:
    """The source exists, serves or is stopped (not held, not working); the backup asked for is
    one of its completed backups; the copy's storage holds the source's data."""
    data = command.data
    source = snapshot.instance(data.source_instance_id)
    if source is None or source.status is InstanceStatus.DELETED:
        raise rejection(
            command,
            RejectionCode.UNKNOWN_INSTANCE,
            f"no source instance {data.source_instance_id}",
            FieldProblem("data.source_instance_id", "no such instance"),
        )
    if source.hold is not None or source.status not in CLONABLE:
        held = f" (a billing hold: {source.hold})" if source.hold is not None else ""
        raise rejection(
            command,
            RejectionCode.NOT_ALLOWED_IN_STATE,
            f"source instance {source.id} is {source.status}{held}; a clone needs one of: "
            + ", ".join(sorted(CLONABLE)),
        )
    if data.backup_id is not None:
        backup = snapshot.backups.get(data.backup_id)
        if (
            backup is None
            or backup.status != "completed"
            or backup.location is None
            or backup.instance_id != source.id
        ):
            raise rejection(
                command,
                RejectionCode.INVALID_DATA,
                f"no completed backup {data.backup_id} of instance {source.id} is recorded",
                FieldProblem("data.backup_id", "no completed backup of the source has this id"),
            )
    if data.plan is not None and data.plan.storage_gib < source.storage_gib:
        raise rejection(
            command,
            RejectionCode.INVALID_DATA,
            f"the copy needs at least the source's storage ({source.storage_gib} GiB), the plan "
            f"asks {data.plan.storage_gib}",
            FieldProblem("data.plan.storage_gib", f"must be at least {source.storage_gib}"),
        )
    version = clone_version(snapshot, command) or source.odoo_version
    _check_image(command, version, versions_with_image)


def _check_archive(command: ImportCommand, archives: Archives | None) -> None:
    """The archive is in the import bucket and exists."""
    archive = command.data.archive
    if archives is None:
        return
    if archive.bucket != archives.bucket:
        raise rejection(
            command,
            RejectionCode.INVALID_DATA,
            f"archives are imported from bucket {archives.bucket}, not {archive.bucket}",
            FieldProblem("data.archive.bucket", f"must be {archives.bucket}"),
        )
    if archives.size(archive.key) is None:
        raise rejection(
            command,
            RejectionCode.INVALID_DATA,
            f"no object {archive.key} in bucket {archive.bucket}",
            FieldProblem("data.archive.key", "no such object in the import bucket"),
        )


def _check_image(
    command: ProvisionCommand | UpgradeCommand | ImportCommand | CloneCommand,
    version: str,
    versions_with_image: Collection[str] | None,
) -> None:
    if versions_with_image is None or version in versions_with_image:
        return
    configured = ", ".join(sorted(versions_with_image)) or "none"
    raise rejection(
        command,
        RejectionCode.INVALID_DATA,
        f"no image is configured for Odoo {version} (configured: {configured})",
        FieldProblem(
            "data.source_instance_id" if isinstance(command, CloneCommand) else "data.odoo_version",
            f"no image is configured for Odoo {version} ({configured})",
        ),
    )


def _check_restorable(
    snapshot: Snapshot, command: RestoreCommand, instance: InstanceRecord
) -> None:
    backup_id = command.data.backup_id
    backup = snapshot.backups.get(backup_id)
    known = backup is not None and backup.status == "completed" and backup.location is not None
    if backup is None or not known or backup.instance_id != instance.id:
        raise rejection(
            command,
            RejectionCode.INVALID_DATA,
            f"no completed backup {backup_id} of instance {instance.id} is recorded",
            FieldProblem("data.backup_id", "no completed backup of this instance has this id"),
        )
    if backup.odoo_version is not None and backup.odoo_version != instance.odoo_version:
        raise rejection(
            command,
            RejectionCode.INVALID_DATA,
            f"backup {backup_id} holds the data of Odoo {backup.odoo_version}; the instance "
            f"runs Odoo {instance.odoo_version}, which cannot open it",
            FieldProblem(
                "data.backup_id",
                f"holds Odoo {backup.odoo_version} data; the instance runs {instance.odoo_version}",
            ),
        )
