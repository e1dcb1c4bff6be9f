"""What a command asks, checked against the instance's record before anything begins.

The contract's rule "a refusal is a rejection": a command refused on its own data or on what the
store records (a version that is not newer or has no image, storage that would shrink, an unknown
backup, a backup id already used) is answered `command.rejected` here, in admission, before its
operation is recorded as begun, never `command.failed` from a handler that has begun. Checks of
the outside world (the cluster, the Jobs' archives) stay with the handlers.

    identity   provision only, before the status verdict: a different provision of an existing
               instance, or a subdomain another instance holds, is `conflict` in any status
    record     after the status verdict, on an instance at rest: `invalid_data` or `conflict`
"""

from collections.abc import Collection

from messages.commands import (
    AnyCommand,
    BackupCommand,
    InstanceCommand,
    ProvisionCommand,
    ResizeCommand,
    RestoreCommand,
    UpgradeCommand,
)
from messages.errors import FieldProblem, MessageRejected, RejectionCode
from store.instances import provision_document
from store.records import InstanceRecord
from store.snapshot import Snapshot


def version_key(version: str) -> tuple[int, ...]:
    """ "17.0" -> (17, 0), for comparing Odoo versions."""
    return tuple(int(part) for part in version.split("."))


def rejection(
    command: AnyCommand | InstanceCommand, code: RejectionCode, message: str, *details: FieldProblem
) -> MessageRejected:
    """A refusal of `command`, to answer with `command.rejected`."""
    return MessageRejected(code, message, tuple(details), command.id, command.type)


def check_identity(
    snapshot: Snapshot, command: ProvisionCommand, instance: InstanceRecord | None
) -> None:
    """A provision is the instance's own (same data) and its subdomain is free."""
    row = snapshot.instances.get(instance.id) if instance is not None else None
    if row is not None and row["spec"] != provision_document(command):
        raise rejection(
            command,
            RejectionCode.CONFLICT,
            f"instance {command.subject} exists with different provision data",
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
) -> None:
    """What the command asks is possible for the instance as recorded; MessageRejected if not.

    `versions_with_image`: the Odoo versions the service has an image for (None: not checked).
    """
    if isinstance(command, ProvisionCommand | UpgradeCommand):
        _check_image(command, command.data.odoo_version, versions_with_image)
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


def _check_image(
    command: ProvisionCommand | UpgradeCommand,
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
        FieldProblem("data.odoo_version", f"no image is configured for it ({configured})"),
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
