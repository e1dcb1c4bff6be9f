"""The watchdog's decision, and deadlines that outlast every healthy operation."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from handlers.deadlines import Waits
from handlers.watchdog import Action, decide
from instance_service.settings import Settings
from k8s.settings import KubernetesSettings, TenantSettings
from store.settings import OperationSettings
from store.watchdog import OpenOperation
from tests.catalog import CATALOG, MACHINE

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
BACKUP = "odoo.instance.backup.v1"


def _operation(deadline: datetime, resumes: int = 0) -> OpenOperation:
    return OpenOperation(
        id="op-1",
        instance_id="3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
        command_id="cmd-1",
        kind="odoo.instance.restart.v1",
        step="waiting: rollout",
        deadline=deadline,
        resumes=resumes,
        command={},
    )


@pytest.mark.parametrize(
    ("seconds_past", "resumes", "readable", "allowed", "expected"),
    [
        (-1, 0, True, 1, None),  # not due yet
        (0, 0, True, 1, Action.RESUME),  # due at its deadline
        (3600, 0, True, 1, Action.RESUME),
        (1, 1, True, 1, Action.TIME_OUT),  # resumed once already: still overdue, so failed
        (1, 0, True, 0, Action.TIME_OUT),  # resuming turned off
        (1, 0, False, 1, Action.TIME_OUT),  # its command cannot be sent again
        (1, 2, True, 3, Action.RESUME),
        (-5, 7, False, 1, None),  # whatever else, never before its deadline
    ],
)
def test_an_overdue_operation_is_resumed_while_resumes_are_left_then_timed_out(
    seconds_past: float, resumes: int, readable: bool, allowed: int, expected: Action | None
) -> None:
    operation = _operation(NOW - timedelta(seconds=seconds_past), resumes)
    settings = OperationSettings(resumes=allowed)
    assert decide(operation, readable, NOW, settings) is expected


def healthy_bounds(kubernetes: KubernetesSettings, tenants: TenantSettings) -> dict[str, float]:
    return CATALOG.healthy_bounds(Waits.of(kubernetes, tenants))


def test_every_command_that_opens_an_operation_has_a_deadline_and_a_bound() -> None:
    assert all(t.deadline_seconds > 0 for t in MACHINE.transitions.values())
    assert set(healthy_bounds(KubernetesSettings(), TenantSettings())) == set(MACHINE.transitions)


@pytest.mark.parametrize("kind", sorted(MACHINE.transitions))
def test_default_deadlines_give_a_healthy_operation_twice_its_waits(kind: str) -> None:
    bound = healthy_bounds(KubernetesSettings(), TenantSettings())[kind]
    declared = MACHINE.transition(kind).deadline_seconds
    assert declared >= 2 * bound
    assert MACHINE.deadline(kind, OperationSettings()) == declared


def test_the_bounds_follow_the_handlers_waits() -> None:
    kubernetes = KubernetesSettings(ready_deadline_seconds=100, health_deadline_seconds=10)
    tenants = TenantSettings(init_deadline_seconds=1000, backup_deadline_seconds=500)
    bounds = healthy_bounds(kubernetes, tenants)
    assert bounds["odoo.instance.start.v1"] == 110  # rollout, health
    assert bounds["odoo.instance.suspend.v1"] == 100  # rollout to no pods
    assert bounds["odoo.instance.provision.v1"] == 1110  # init Job, rollout, health
    assert bounds[BACKUP] == 500
    assert bounds["odoo.instance.restore.v1"] == 500 + 100 + 500 + 110
    assert bounds["odoo.instance.upgrade.v1"] == 500 + 100 + 1000 + 110 + 100 + 500 + 110
    assert bounds["odoo.instance.delete.v1"] == 500 + 200


def test_deadlines_are_read_per_type_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_OPERATIONS__DEADLINE_SECONDS", f'{{"{BACKUP}": 21600}}')
    monkeypatch.setenv("INSTANCE_SERVICE_OPERATIONS__RESUMES", "2")
    operations = Settings().operations
    assert MACHINE.deadline(BACKUP, operations) == 21600
    assert MACHINE.deadline("odoo.instance.stop.v1", operations) == 1800  # the others keep theirs
    assert operations.resumes == 2


def test_a_deadline_shorter_than_the_waits_it_must_cover_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A backup Job may now run four hours: the backup's default deadline (3 h) would cut it.
    monkeypatch.setenv("INSTANCE_SERVICE_TENANTS__BACKUP_DEADLINE_SECONDS", "14400")
    with pytest.raises(ValidationError) as raised:
        Settings()
    message = str(raised.value)
    assert "INSTANCE_SERVICE_OPERATIONS__DEADLINE_SECONDS" in message
    assert f"{BACKUP}: 10800 s < 14400 s" in message
    monkeypatch.setenv(
        "INSTANCE_SERVICE_OPERATIONS__DEADLINE_SECONDS",
        '{"odoo.instance.backup.v1": 28800, "odoo.instance.restore.v1": 43200, '
        '"odoo.instance.upgrade.v1": 43200, "odoo.instance.delete.v1": 28800, '
        '"odoo.instance.clone.v1": 43200, "odoo.instance.import.v1": 28800}',
    )
    assert MACHINE.deadline(BACKUP, Settings().operations) == 28800


@pytest.mark.parametrize(
    "deadlines",
    [{"odoo.instance.explode.v1": 60}, {"odoo.fleet.reconcile.v1": 60}, {BACKUP: 0}],
)
def test_a_deadline_names_a_command_that_opens_an_operation(deadlines: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        Settings(operations={"deadline_seconds": deadlines})
