"""The lifecycle handlers' decisions, with fakes of our own ports (cluster, tenant databases).

The real cluster, broker and databases are in tests/handlers; here each failure path and each
resumption is pinned down quickly and exactly. The store is a real SQLite file.
"""

import base64
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from handlers.backups import known_backup
from handlers.platform import Platform
from handlers.results import Completed, Continue, HandlerContext
from k8s.apply import WaitTimeoutError
from k8s.health import Route
from k8s.kinds import Kind
from k8s.names import InstanceNames
from k8s.settings import KubernetesSettings, OdooImage, TenantSettings
from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, PermanentError, RejectionCode
from messages.events import InstanceEventData, StartedEvent
from messages.parsing import parse_command
from messages.publishing import build_command
from messages.settings import ContractSettings
from objectstore.access import AccessKey
from objectstore.locations import ObjectLocation, backup_location
from objectstore.settings import ObjectStorageSettings
from objectstore.storage import StoredObject
from store.database import create_engine
from store.ledger import Ledger
from store.migrate import upgrade
from store.records import BackupRecord, Outcome
from store.settings import StoreSettings
from tests.catalog import CATALOG, MACHINE

INSTANCE = "6f1c2b9e-3d4a-4e5f-8a7b-9c0d1e2f3a4b"
T = "odoo.instance."


@dataclass
class FakeCluster:
    """Our Cluster port in memory: objects stored by (kind, name); waits answer from `ready`."""

    stored: dict[tuple[str, str], Any] = field(default_factory=dict)
    ready: Callable[[str, str], bool] = lambda kind, name: True
    calls: list[tuple[str, ...]] = field(default_factory=list)
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)

    namespace: str = "tenants"

    def apply(self, kind: Kind[Any], manifest: dict[str, Any]) -> Any:
        assert manifest["kind"] == kind.name
        name = manifest["metadata"]["name"]
        self.calls.append(("apply", kind.name, name))
        self.requests[("patch", kind.name)] += 1
        status = SimpleNamespace(
            conditions=[SimpleNamespace(type="Complete", status="True")]
            if kind.name == "Job"
            else []
        )
        # As the API server does: stringData comes back base64-encoded in data.
        data = {
            key: base64.b64encode(value.encode()).decode()
            for key, value in manifest.get("stringData", {}).items()
        }
        obj = SimpleNamespace(
            metadata=SimpleNamespace(uid=f"uid-{kind.name}"),
            status=status,
            data=data,
            manifest=manifest,
        )
        self.stored[(kind.name, name)] = obj
        return obj

    def get(self, kind: Kind[Any], name: str) -> Any | None:
        self.calls.append(("get", kind.name, name))
        return self.stored.get((kind.name, name))

    def objects(self, kind: Kind[Any], *, selector: str) -> list[Any]:
        return []

    def documents(self, kind: Kind[object], *, selector: str) -> list[dict[str, Any]]:
        return [obj.manifest for (found, _name), obj in self.stored.items() if found == kind.name]

    def scale(self, name: str, replicas: int, *, absent_ok: bool = False) -> bool:
        self.calls.append(("scale", name, str(replicas)))
        return ("Deployment", name) in self.stored

    def restart(self, name: str, at: datetime | None = None) -> None:
        self.calls.append(("restart", name, str(at)))

    def delete(self, kind: Kind[object], name: str) -> None:
        self.calls.append(("delete", kind.name, name))
        self.stored.pop((kind.name, name), None)

    def wait_for(self, kind: Kind[Any], name: str, condition: Any, deadline_seconds: float) -> Any:
        self.calls.append(("wait_for", kind.name, name))
        if not self.ready(kind.name, name):
            raise WaitTimeoutError("not yet", None)
        return self.stored.get((kind.name, name))

    def wait_gone(self, kind: Kind[object], name: str, deadline_seconds: float) -> None:
        self.calls.append(("wait_gone", kind.name, name))

    def wait_none(self, kind: Kind[object], *, selector: str, deadline_seconds: float) -> None:
        self.calls.append(("wait_none", kind.name, selector))


@dataclass
class FakeDatabases:
    """Our TenantDatabasePort in memory."""

    ensured: list[tuple[str, str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def ensure(self, role: str, database: str, password: str) -> None:
        self.ensured.append((role, database, password))

    def drop(self, role: str, database: str) -> None:
        self.dropped.append((role, database))

    def ping(self) -> None:
        return None

    def open_maintenance_databases(self) -> list[str]:
        return []


@dataclass
class FakeBackups:
    """The backup storage port in memory: grants and revocations are counted, nothing stored."""

    settings: ObjectStorageSettings = field(
        default_factory=lambda: ObjectStorageSettings(keyset=SecretStr("{}"))
    )
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    @property
    def keyset(self) -> str:
        return "{}"

    def location(self, instance_id: str, backup_id: str) -> ObjectLocation:
        return backup_location("b", "backups", instance_id, backup_id)

    def instance_prefix(self, instance_id: str) -> str:
        return f"backups/{instance_id}/"

    def grant(self, instance_id: str, current_key_id: str | None) -> AccessKey | None:
        self.granted.append(instance_id)
        return AccessKey("key", "secret") if current_key_id is None else None

    def revoke(self, instance_id: str) -> None:
        self.revoked.append(instance_id)

    def describe(self, location: ObjectLocation) -> StoredObject | None:
        return None

    def remove(self, locations: list[ObjectLocation]) -> None:
        return None

    def abort_uploads(self, prefix: str) -> int:
        return 0


class NowhereResolver:
    """Routes nowhere: a health check never passes (these tests stop before it would)."""

    def route(self, host: str, port: int) -> Route | None:
        return None


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    engine = create_engine(StoreSettings(url=SecretStr(f"sqlite:///{tmp_path / 's.db'}")))
    upgrade(engine)
    yield Ledger(engine, MACHINE)
    engine.dispose()


def _platform(cluster: FakeCluster, databases: FakeDatabases, **changes: Any) -> Platform:
    tenants = changes.pop("tenants", TenantSettings())
    backups = changes.pop("backups", FakeBackups())
    return Platform(
        cluster=lambda: cluster,
        databases=databases,
        resolver=NowhereResolver(),
        kubernetes=KubernetesSettings(namespace="tenants", **changes),
        tenants=tenants,
        backups=backups,
    )


def _command(command_type: str, **data: Any) -> AnyCommand:
    message = build_command(f"{T}{command_type}.v1", {"instance_id": INSTANCE, **data}, source="/t")
    return parse_command(message.body, message.properties, ContractSettings())


PROVISION = {
    "customer_id": "cus_1",
    "subdomain": "acme",
    "odoo_version": "17.0",
    "plan": {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 5},
    "admin_email": "owner@acme.example",
}


def _context(ledger: Ledger, command: AnyCommand, budget: float = 3.6) -> HandlerContext:
    """Admit and begin the command, as the consumer does; a short budget keeps waits short."""
    admission = ledger.admit(command)
    operation_id = ledger.begin(command, admission)
    return HandlerContext(ledger, admission, operation_id, time.monotonic() + budget)


def _again(context: HandlerContext, budget: float = 3.6) -> HandlerContext:
    """The same operation, as a continuation or redelivery sees it."""
    return HandlerContext(
        context.ledger, context.admission, context.operation_id, time.monotonic() + budget
    )


def _existing_instance(ledger: Ledger) -> None:
    """An instance that exists and runs, as after a successful provision."""
    command = _command("provision", **PROVISION)
    _context(ledger, command)
    ledger.record(command, Outcome.SUCCEEDED, _event(command))


def _run(platform: Platform, command: AnyCommand, context: HandlerContext) -> Any:
    return CATALOG.handlers(platform)[command.type](command, context)


def _failed_job(uid: str) -> Any:
    condition = SimpleNamespace(type="Failed", status="True", reason="BackoffLimitExceeded")
    condition.message = "Job has reached the specified backoff limit"
    return SimpleNamespace(
        metadata=SimpleNamespace(uid=uid), status=SimpleNamespace(conditions=[condition])
    )


def test_provision_without_an_image_for_its_version_fails_before_any_effect(
    ledger: Ledger,
) -> None:
    cluster, databases = FakeCluster(), FakeDatabases()
    only_18 = TenantSettings(images={"18.0": OdooImage(uid=100, gid=101)})
    command = _command("provision", **PROVISION)
    with pytest.raises(PermanentError) as failure:
        _run(_platform(cluster, databases, tenants=only_18), command, _context(ledger, command))
    assert failure.value.code == "image_not_allowed"
    assert "no image is configured for Odoo 17.0 (configured: 18.0)" in str(failure.value)
    assert cluster.calls == []
    assert databases.ensured == []


def test_provision_keeps_the_passwords_an_earlier_run_wrote(ledger: Ledger) -> None:
    cluster, databases = FakeCluster(), FakeDatabases()
    names = InstanceNames(INSTANCE)
    written = {
        key: base64.b64encode(value.encode()).decode()
        for key, value in {
            "database-password": "db-secret-from-before",
            "admin-password": "admin-from-before",
            "admin-passwd": "master-from-before",
        }.items()
    }
    cluster.stored[("Secret", names.secret)] = SimpleNamespace(data=written)
    command = _command("provision", **PROVISION)
    result = _run(_platform(cluster, databases), command, _context(ledger, command))
    assert isinstance(result, Continue)  # health cannot pass here: it waits
    assert databases.ensured == [(names.role, names.database, "db-secret-from-before")]
    applied = cluster.stored[("Secret", names.secret)].manifest["stringData"]
    assert applied["database-password"] == "db-secret-from-before"
    assert applied["admin-password"] == "admin-from-before"


def test_a_resumed_provision_does_not_repeat_recorded_steps(ledger: Ledger) -> None:
    rolled_out = False
    cluster = FakeCluster(ready=lambda kind, name: kind != "Deployment" or rolled_out)
    databases = FakeDatabases()
    platform = _platform(cluster, databases)
    command = _command("provision", **PROVISION)
    context = _context(ledger, command)
    first = _run(platform, command, context)
    assert isinstance(first, Continue)
    assert first.step == "waiting: rollout"
    applied = [call for call in cluster.calls if call[0] == "apply"]
    assert [kind for _, kind, _ in applied] == [
        "Secret",
        "Service",
        "NetworkPolicy",
        "NetworkPolicy",
        "Ingress",
        "PersistentVolumeClaim",
        "Job",
        "Deployment",
    ]
    cluster.calls.clear()
    rolled_out = True
    second = _run(platform, command, _again(context))
    assert isinstance(second, Continue)
    assert second.step == "waiting: health"
    assert [call[0] for call in cluster.calls] == ["wait_for"]
    assert len(databases.ensured) == 1
    assert ledger.operation(str(context.operation_id)).result["steps"] == [
        "credentials",
        "database",
        "objects",
        "initialise",
        "deployment",
        "rollout",
    ]


def test_a_rollout_past_the_ready_deadline_fails_and_says_why(ledger: Ledger) -> None:
    cluster = FakeCluster(ready=lambda kind, name: kind != "Deployment")
    platform = _platform(cluster, FakeDatabases(), ready_deadline_seconds=120)
    command = _command("provision", **PROVISION)
    context = _context(ledger, command)
    assert isinstance(_run(platform, command, context), Continue)
    operation_id = str(context.operation_id)
    # The wait began long ago, as after many continuations.
    ledger.advance(operation_id, "waiting: rollout", rollout_since=time.time() - 121)
    with pytest.raises(PermanentError) as failure:
        _run(platform, command, _again(context))
    assert failure.value.code == "not_ready"
    assert "did not have 1 Ready pod(s) within 120 s: no pod exists" in str(failure.value)


def test_an_init_job_that_fails_in_this_operation_fails_the_provision(ledger: Ledger) -> None:
    cluster = FakeCluster()
    names = InstanceNames(INSTANCE)
    original_apply = cluster.apply

    def apply(kind: Kind[Any], manifest: dict[str, Any]) -> Any:
        obj = original_apply(kind, manifest)
        if manifest["kind"] == "Job":
            obj = _failed_job("uid-Job")
            cluster.stored[("Job", names.init_job)] = obj
        return obj

    cluster.apply = apply  # type: ignore[method-assign]
    command = _command("provision", **PROVISION)
    with pytest.raises(PermanentError) as failure:
        _run(_platform(cluster, FakeDatabases()), command, _context(ledger, command))
    assert failure.value.code == "database_init_failed"
    message = str(failure.value)
    assert "BackoffLimitExceeded" in message
    assert f"kubectl logs -n tenants job/{names.init_job} --all-containers" in message


def test_an_init_job_left_failed_by_an_earlier_provision_is_replaced(ledger: Ledger) -> None:
    cluster = FakeCluster()
    names = InstanceNames(INSTANCE)
    cluster.stored[("Job", names.init_job)] = _failed_job("uid-of-an-earlier-run")
    command = _command("provision", **PROVISION)
    _run(_platform(cluster, FakeDatabases()), command, _context(ledger, command))
    job_calls = [call for call in cluster.calls if call[1:] == ("Job", names.init_job)]
    assert [call[0] for call in job_calls] == ["get", "delete", "wait_gone", "apply"]


def test_start_without_a_deployment_fails_and_says_how_to_recover(ledger: Ledger) -> None:
    _existing_instance(ledger)
    command = _command("stop")
    ledger.record(command, Outcome.SUCCEEDED, _event(command))
    start = _command("start")
    with pytest.raises(PermanentError) as failure:
        _run(_platform(FakeCluster(), FakeDatabases()), start, _context(ledger, start))
    assert failure.value.code == "missing_deployment"
    assert "provision the instance again with the same data, or delete it" in str(failure.value)


def test_stop_without_a_deployment_is_already_done(ledger: Ledger) -> None:
    _existing_instance(ledger)
    cluster = FakeCluster()
    stop = _command("stop")
    result = _run(_platform(cluster, FakeDatabases()), stop, _context(ledger, stop))
    assert isinstance(result, Completed)
    assert result.event.type == "odoo.instance.stopped.v1"
    assert [call[0] for call in cluster.calls] == ["scale"]


def test_a_restart_patches_one_stamp_however_often_it_runs(ledger: Ledger) -> None:
    _existing_instance(ledger)
    names = InstanceNames(INSTANCE)
    cluster = FakeCluster(ready=lambda kind, name: False)
    cluster.stored[("Deployment", names.base)] = SimpleNamespace()
    platform = _platform(cluster, FakeDatabases())
    restart = _command("restart")
    context = _context(ledger, restart)
    assert isinstance(_run(platform, restart, context), Continue)
    # A crash between the patch and its record: the step runs again, with the same stamp.
    operation_id = str(context.operation_id)
    steps = ledger.operation(operation_id).result["steps"]
    ledger.advance(operation_id, "scale", steps=[s for s in steps if s != "restart"])
    _run(platform, restart, _again(context))
    stamps = {call[2] for call in cluster.calls if call[0] == "restart"}
    assert len([call for call in cluster.calls if call[0] == "restart"]) == 2
    assert len(stamps) == 1


def test_a_delete_of_an_instance_without_data_cannot_take_its_final_backup(
    ledger: Ledger,
) -> None:
    _existing_instance(ledger)
    cluster, databases = FakeCluster(), FakeDatabases()  # no volume, no Secret
    delete = _command("delete")
    with pytest.raises(PermanentError) as failure:
        _run(_platform(cluster, databases), delete, _context(ledger, delete))
    assert failure.value.code == "backup_impossible"
    assert "final_backup=false" in str(failure.value)
    assert [call for call in cluster.calls if call[0] in ("apply", "delete")] == []


def test_a_delete_whose_final_backup_fails_deletes_nothing(ledger: Ledger) -> None:
    _existing_instance(ledger)
    cluster, databases = FakeCluster(), FakeDatabases()  # its Job leaves no report
    names = InstanceNames(INSTANCE)
    cluster.stored[("PersistentVolumeClaim", names.volume)] = SimpleNamespace()
    cluster.stored[("Secret", names.secret)] = SimpleNamespace()
    delete = _command("delete")
    with pytest.raises(PermanentError) as failure:
        _run(_platform(cluster, databases), delete, _context(ledger, delete))
    assert failure.value.code == "backup_failed"
    assert failure.value.rolled_back is True
    assert [call for call in cluster.calls if call[0] == "delete"] == []
    assert databases.dropped == []


def test_delete_keep_data_keeps_the_volume_the_database_and_the_secret(ledger: Ledger) -> None:
    _existing_instance(ledger)
    cluster, databases = FakeCluster(), FakeDatabases()
    delete = _command("delete", final_backup=False, keep_data=True)
    result = _run(_platform(cluster, databases), delete, _context(ledger, delete))
    assert isinstance(result, Completed)
    deleted = {call[1] for call in cluster.calls if call[0] == "delete"}
    assert deleted == {"Deployment", "Ingress", "Service", "NetworkPolicy", "Secret"}
    secrets = [call[2] for call in cluster.calls if call[:2] == ("delete", "Secret")]
    assert secrets == [InstanceNames(INSTANCE).backup_access]  # its credentials Secret stays
    assert databases.dropped == []


def _event(command: AnyCommand) -> Any:
    assert isinstance(command, InstanceCommand)
    return StartedEvent.caused_by(command, InstanceEventData(instance_id=command.subject))


def test_a_backup_of_another_odoo_version_is_not_restored(ledger: Ledger) -> None:
    _existing_instance(ledger)  # runs Odoo 17.0
    old = BackupRecord(
        id="5d0c9a7e-1f2b-4c3d-8e9f-a0b1c2d3e4f5",
        instance_id=INSTANCE,
        location="/backups/x/y.tar",
        size_bytes=10,
        sha256="0" * 64,
        odoo_version="16.0",
    )
    ledger.add_backup(old)
    restore = _command("restore", backup_id=old.id)
    # A restore command is refused in admission, before anything begins.
    with pytest.raises(MessageRejected) as refused:
        ledger.admit(restore)
    assert refused.value.code is RejectionCode.INVALID_DATA
    assert "holds the data of Odoo 16.0; the instance runs Odoo 17.0" in refused.value.message
    # The handlers' own look-up (an upgrade's way back reads its backup so) refuses it too.
    with pytest.raises(PermanentError) as failure:
        known_backup(ledger, old.id, INSTANCE, "17.0")
    assert failure.value.code == "backup_version_mismatch"
    assert failure.value.rolled_back is True
