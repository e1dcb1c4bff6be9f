"""Refusals are rejections: what a command asks is checked against the instance's record in
admission, before anything is recorded as begun, on both databases."""

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, RejectionCode
from messages.events import InstanceEventData, StartedEvent
from messages.examples import INSTANCE_ID
from store.ledger import Ledger
from store.locks import InstanceBusyError
from store.models import Operation
from store.records import BackupRecord, Outcome
from tests.catalog import MACHINE
from tests.store.conftest import command

T = "odoo.instance."
OTHER_ID = "11111111-2222-4333-8444-555555555555"
USED = "5d0c9a7e-1f2b-4c3d-8e9f-a0b1c2d3e4f5"
OLD = "6e1d0b8f-2a3c-4d4e-9fa0-b1c2d3e4f5a6"
THEIRS = "7f2e1c9a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
NEVER = "8a3f2d0b-4c5e-4f6a-9b0c-1d2e3f4a5b6c"


def _done(ledger: Ledger, cmd: AnyCommand) -> None:
    assert isinstance(cmd, InstanceCommand)
    with ledger.exclusive(cmd):
        ledger.begin(cmd, ledger.admit(cmd))
        event = StartedEvent.caused_by(cmd, InstanceEventData(instance_id=cmd.subject))
        ledger.record(cmd, Outcome.SUCCEEDED, event)


def _backup(ledger: Ledger, backup_id: str, instance_id: str, version: str) -> None:
    ledger.add_backup(
        BackupRecord(
            backup_id, instance_id, f"/backups/{backup_id}.tar", 1, "0" * 64, None, version
        )
    )


@pytest.fixture
def instance(ledger: Ledger) -> str:
    """A running instance of Odoo 17.0 with a backup, and another instance with one."""
    for seconds, instance_id in enumerate((INSTANCE_ID, OTHER_ID)):
        provision = command(
            f"{T}provision.v1", seconds=seconds, instance_id=instance_id, subdomain=f"s{seconds}x"
        )
        _done(ledger, provision)
    _backup(ledger, USED, INSTANCE_ID, "17.0")
    _backup(ledger, OLD, INSTANCE_ID, "16.0")
    _backup(ledger, THEIRS, OTHER_ID, "17.0")
    return INSTANCE_ID


REFUSALS = [
    ("upgrade", {"odoo_version": "17.0"}, RejectionCode.INVALID_DATA, "data.odoo_version"),
    ("upgrade", {"odoo_version": "16.0"}, RejectionCode.INVALID_DATA, "data.odoo_version"),
    ("backup", {"backup_id": USED}, RejectionCode.CONFLICT, "data.backup_id"),
    ("backup", {"backup_id": THEIRS}, RejectionCode.CONFLICT, "data.backup_id"),
    ("restore", {"backup_id": NEVER}, RejectionCode.INVALID_DATA, "data.backup_id"),
    ("restore", {"backup_id": THEIRS}, RejectionCode.INVALID_DATA, "data.backup_id"),
    ("restore", {"backup_id": OLD}, RejectionCode.INVALID_DATA, "data.backup_id"),
    (
        "resize",
        {"plan": {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 1}},
        RejectionCode.INVALID_DATA,
        "data.plan.storage_gib",
    ),
]


@pytest.mark.parametrize(("verb", "data", "code", "field"), REFUSALS)
def test_a_refusal_is_a_rejection_before_anything_begins(
    ledger: Ledger,
    engine: Engine,
    instance: str,
    verb: str,
    data: dict[str, Any],
    code: RejectionCode,
    field: str,
) -> None:
    before = ledger.instance(instance)
    with pytest.raises(MessageRejected) as refused:
        ledger.admit(command(f"{T}{verb}.v1", seconds=10, **data))
    assert refused.value.code is code
    assert [problem.field for problem in refused.value.details] == [field]
    assert ledger.instance(instance) == before  # nothing begun, nothing recorded
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Operation)) == 2


def test_what_is_possible_is_admitted(ledger: Ledger, instance: str) -> None:
    for verb, data in [
        ("upgrade", {"odoo_version": "18.0"}),
        ("backup", {"backup_id": NEVER}),
        ("restore", {"backup_id": USED}),
    ]:
        admission = ledger.admit(command(f"{T}{verb}.v1", seconds=10, **data))
        assert admission.instance is not None
        assert admission.instance.id == instance


def test_a_version_without_an_image_is_refused(engine: Engine, instance: str) -> None:
    ledger = Ledger(engine, MACHINE, versions_with_image={"16.0", "17.0"})
    with pytest.raises(MessageRejected) as refused:
        ledger.admit(command(f"{T}upgrade.v1", seconds=10, odoo_version="18.0"))
    assert refused.value.code is RejectionCode.INVALID_DATA
    assert "no image is configured for Odoo 18.0 (configured: 16.0, 17.0)" in refused.value.message
    new = "22222222-3333-4444-8555-666666666666"
    provision = command(
        f"{T}provision.v1", seconds=10, instance_id=new, subdomain="fresh", odoo_version="18.0"
    )
    with pytest.raises(MessageRejected) as unserved:
        ledger.admit(provision)
    assert unserved.value.code is RejectionCode.INVALID_DATA
    assert ledger.instance(new) is None


def test_a_redelivered_backup_resumes_past_its_own_backup_id(ledger: Ledger, instance: str) -> None:
    backup = command(f"{T}backup.v1", seconds=10, backup_id=NEVER)
    operation_id = ledger.begin(backup, ledger.admit(backup))
    _backup(ledger, NEVER, instance, "17.0")  # its Job ran and was recorded; then a crash
    resumed = ledger.admit(backup)
    assert resumed.operation_id == operation_id
    again = command(f"{T}backup.v1", command_id="another", seconds=11, backup_id=NEVER)
    ledger.record(
        backup,
        Outcome.SUCCEEDED,
        StartedEvent.caused_by(backup, InstanceEventData(instance_id=instance)),
    )
    with pytest.raises(MessageRejected) as refused:
        ledger.admit(again)  # another command with that id: the id is taken
    assert refused.value.code is RejectionCode.CONFLICT


# -- commands that make an instance from another's data or an archive --------------------------

NEW = "33333333-4444-4555-8666-777777777777"


def _clone(seconds: float = 10, **data: Any) -> AnyCommand:
    values = {"source_instance_id": INSTANCE_ID, "subdomain": "copy", "backup_id": USED, **data}
    return command(f"{T}clone.v1", seconds=seconds, instance_id=NEW, **values)


def test_a_clone_begins_as_a_copy_of_its_source_at_its_backups_version(
    ledger: Ledger, instance: str
) -> None:
    clone = _clone(backup_id=OLD)
    ledger.begin(clone, ledger.admit(clone))
    made, source = ledger.instance(NEW), ledger.instance(instance)
    assert made is not None
    assert source is not None
    assert (made.odoo_version, made.neutralized, made.subdomain) == ("16.0", True, "copy")
    assert (made.admin_email, made.modules, made.storage_gib) == (
        source.admin_email,
        source.modules,
        source.storage_gib,
    )
    # The same clone sent again (another id) waits for it; another command for that id
    # conflicts with what made it.
    again = command(
        f"{T}clone.v1",
        command_id="again",
        seconds=11,
        instance_id=NEW,
        source_instance_id=INSTANCE_ID,
        subdomain="copy",
        backup_id=OLD,
    )
    with pytest.raises(InstanceBusyError):
        ledger.admit(again)
    provision = command(f"{T}provision.v1", seconds=11, instance_id=NEW, subdomain="copy")
    with pytest.raises(MessageRejected) as conflict:
        ledger.admit(provision)
    assert conflict.value.code is RejectionCode.CONFLICT


CLONE_REFUSALS = [
    ({"source_instance_id": NEVER}, RejectionCode.UNKNOWN_INSTANCE, "data.source_instance_id"),
    ({"backup_id": THEIRS}, RejectionCode.INVALID_DATA, "data.backup_id"),
    ({"backup_id": NEVER}, RejectionCode.INVALID_DATA, "data.backup_id"),
    (
        {"plan": {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 1}},
        RejectionCode.INVALID_DATA,
        "data.plan.storage_gib",
    ),
    ({"subdomain": "s1x"}, RejectionCode.CONFLICT, "data.subdomain"),
]


@pytest.mark.parametrize(("data", "code", "field"), CLONE_REFUSALS)
def test_a_clone_the_records_refuse_is_rejected_before_anything_begins(
    ledger: Ledger, instance: str, data: dict[str, Any], code: RejectionCode, field: str
) -> None:
    with pytest.raises(MessageRejected) as refused:
        ledger.admit(_clone(**data))
    assert refused.value.code is code
    assert [problem.field for problem in refused.value.details] == [field]
    assert ledger.instance(NEW) is None


def test_a_clone_of_a_held_source_is_not_allowed(ledger: Ledger, instance: str) -> None:
    _done(ledger, command(f"{T}suspend.v1", seconds=5, reason="abuse"))
    with pytest.raises(MessageRejected) as refused:
        ledger.admit(_clone())
    assert refused.value.code is RejectionCode.NOT_ALLOWED_IN_STATE
    assert "a billing hold: suspended" in refused.value.message


class Archives:
    """The import bucket, as a fake: which keys exist, and how often it was asked."""

    bucket = "instance-service-imports"

    def __init__(self, *keys: str) -> None:
        self.keys = set(keys)
        self.asked = 0

    def size(self, key: str) -> int | None:
        self.asked += 1
        return 1024 if key in self.keys else None


def _import(key: str, bucket: str = Archives.bucket) -> AnyCommand:
    archive = {"bucket": bucket, "key": key}
    return command(f"{T}import.v1", seconds=10, instance_id=NEW, subdomain="imp", archive=archive)


def test_an_import_whose_archive_is_missing_or_elsewhere_is_rejected(engine: Engine) -> None:
    archives = Archives("acme.zip")
    ledger = Ledger(engine, MACHINE, archives=archives)
    for refused_import, field in [
        (_import("nothing.zip"), "data.archive.key"),
        (_import("acme.zip", bucket="someone-elses"), "data.archive.bucket"),
    ]:
        with pytest.raises(MessageRejected) as refused:
            ledger.admit(refused_import)
        assert refused.value.code is RejectionCode.INVALID_DATA
        assert [problem.field for problem in refused.value.details] == [field]
    assert ledger.instance(NEW) is None
    accepted = _import("acme.zip")
    ledger.begin(accepted, ledger.admit(accepted))
    archives.keys.clear()  # removed after it began: a redelivery resumes, not looked at again
    asked = archives.asked
    assert ledger.admit(accepted).operation_id is not None
    assert archives.asked == asked
