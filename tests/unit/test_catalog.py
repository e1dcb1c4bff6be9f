"""A command is declared once: every table the service keeps of command types comes from that.

A test command (its own model, event, handler and declaration, none of them in the service)
is added to a catalog, and the registry, the status machine, the ledger, the queue bindings and
the AsyncAPI document all pick it up; a catalog with a type twice, a part missing or a contract
type undeclared refuses to be built.
"""

import dataclasses
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from pydantic import SecretStr

from consumers.settings import ConsumerSettings
from consumers.topology import queue_for, work_queues
from handlers.catalog import (
    DECLARATIONS,
    OPTIONAL_PARTS,
    Catalog,
    CatalogError,
    command_catalog,
)
from handlers.deadlines import Waits
from handlers.declarations import Declaration, Queue
from handlers.platform import Platform
from handlers.results import Completed, HandlerContext, HandlerResult
from messages import schema
from messages.commands import COMMAND_MODELS, InstanceCommand, InstanceData
from messages.errors import MessageRejected, RejectionCode
from messages.events import Event, InstanceEventData
from messages.examples import command_example
from messages.schema import DocumentedCommand, asyncapi_document
from store.database import create_engine
from store.ledger import Ledger
from store.lifecycle import Ending, InstanceStatus, Rest, Transition, Verdict
from store.migrate import upgrade
from store.records import Admission
from store.settings import OperationSettings, StoreSettings

ROOT = Path(__file__).resolve().parents[2]
PROBE_TYPE = "odoo.instance.probe.v1"
S = InstanceStatus
INSTANCE = "0d6f3b8e-6a3c-4c1e-9f0a-2b7d5e8c1a40"


class ProbeCommand(InstanceCommand):
    """`odoo.instance.probe.v1`: a command only this test knows."""

    type: Literal["odoo.instance.probe.v1"]
    data: InstanceData


class ProbedEvent(Event):
    """`odoo.instance.probed.v1`"""

    type: Literal["odoo.instance.probed.v1"]
    data: InstanceEventData


class Probe:
    """The probe's handler: typed by its command, it checks nothing of what it is given."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def __call__(self, command: ProbeCommand, context: HandlerContext) -> HandlerResult:
        """Answer at once."""
        return Completed(
            ProbedEvent.caused_by(command, InstanceEventData(instance_id=command.subject))
        )


PROBE = Declaration(
    model=ProbeCommand,
    queue=Queue.QUICK,
    transition=Transition(
        frozenset({S.RUNNING, S.DEGRADED}), S.RESTARTING, None, deadline_seconds=600
    ),
    event=ProbedEvent,
    healthy_within=lambda waits: waits.up,
    locks=True,
    handler=Probe,
)
CONTRACT = {**COMMAND_MODELS, PROBE_TYPE: ProbeCommand}


def _probe(instance_id: str = INSTANCE) -> ProbeCommand:
    return ProbeCommand.model_validate(
        {
            "specversion": "1.0",
            "type": PROBE_TYPE,
            "id": "probe-1",
            "source": "/tests",
            "time": "2026-12-01T10:00:00Z",
            "subject": instance_id,
            "data": {"instance_id": instance_id},
        }
    )


@pytest.fixture
def catalog() -> Catalog:
    return Catalog([*DECLARATIONS, PROBE], CONTRACT)


@pytest.fixture
def ledger(catalog: Catalog, tmp_path: Path) -> Iterator[Ledger]:
    engine = create_engine(StoreSettings(url=SecretStr(f"sqlite:///{tmp_path / 's.db'}")))
    upgrade(engine)
    yield Ledger(engine, catalog.status_machine)
    engine.dispose()


def test_the_registry_hands_the_new_command_to_its_handler(
    catalog: Catalog, ledger: Ledger
) -> None:
    platform = cast(Platform, None)  # the probe touches nothing of the platform
    registry = catalog.registry(catalog.handlers(platform))
    context = HandlerContext(ledger, Admission(None, PROBE.transition), None, time.monotonic() + 1)
    result = registry.handler_for(PROBE_TYPE)(cast(Any, _probe()), context)
    assert isinstance(result, Completed)
    assert isinstance(result.event, ProbedEvent)
    assert result.event.subject == INSTANCE
    # A command of another model never reaches it: the registry routes by model.
    with pytest.raises(TypeError, match="routed to the handler of ProbeCommand"):
        registry.handler_for(PROBE_TYPE)(cast(Any, ledger), context)


def test_the_status_machine_and_the_ledger_know_the_new_command(
    catalog: Catalog, ledger: Ledger
) -> None:
    machine = catalog.status_machine
    assert machine.transition(PROBE_TYPE) is PROBE.transition
    assert machine.decide(S.RUNNING, PROBE_TYPE) is Verdict.RUN
    assert machine.decide(S.STOPPED, PROBE_TYPE) is Verdict.NOT_ALLOWED
    assert machine.decide(S.STARTING, PROBE_TYPE) is Verdict.WAIT
    assert machine.decide(None, PROBE_TYPE) is Verdict.UNKNOWN_INSTANCE
    assert machine.settle(PROBE_TYPE, S.DEGRADED, None, Ending.SUCCEEDED) == Rest(
        S.DEGRADED, None
    )  # `done` None: back to where it was
    assert machine.holds_instance(PROBE_TYPE)
    with pytest.raises(MessageRejected) as refused:
        ledger.admit(cast(Any, _probe()))
    assert refused.value.code is RejectionCode.UNKNOWN_INSTANCE


def test_the_watchdog_knows_the_new_commands_deadline_and_healthy_bound(
    catalog: Catalog,
) -> None:
    waits = Waits(ready=100, health=10, init=1000, data_job=500)
    assert catalog.healthy_bounds(waits)[PROBE_TYPE] == 110
    assert catalog.status_machine.deadline(PROBE_TYPE, OperationSettings()) == 600
    configured = OperationSettings(deadline_seconds={PROBE_TYPE: 900})
    assert catalog.status_machine.deadline(PROBE_TYPE, configured) == 900


def test_the_new_command_is_bound_to_its_declared_queue(catalog: Catalog) -> None:
    settings = ConsumerSettings()
    quick, long = work_queues(settings, catalog)
    assert PROBE_TYPE in quick.command_types
    assert PROBE_TYPE not in long.command_types
    assert queue_for(PROBE_TYPE, settings, catalog).name == settings.quick_queue
    assert catalog.queue_of(PROBE_TYPE) is Queue.QUICK
    # The service's own bindings do not have it.
    assert PROBE_TYPE not in work_queues(settings)[0].command_types


def test_the_asyncapi_document_states_the_new_command(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DocumentedCommand(ProbeCommand, "odoo.instance.probed.v1") in catalog.documented()
    example = {**command_example("odoo.instance.start.v1"), "type": PROBE_TYPE}

    def examples(command_type: str) -> dict[str, Any]:
        return example if command_type == PROBE_TYPE else command_example(command_type)

    monkeypatch.setattr(schema, "command_example", examples)
    document = asyncapi_document("test", catalog.documented())
    message = document["components"]["messages"]["ProbeCommand"]
    assert message["name"] == PROBE_TYPE
    assert message["description"] == "Its success is reported by `odoo.instance.probed.v1`."
    assert "ProbeCommand" in document["channels"]["instanceCommands"]["messages"]


def test_a_type_declared_twice_stops_start_up() -> None:
    with pytest.raises(CatalogError, match=f"{re.escape(PROBE_TYPE)} is declared twice"):
        Catalog([*DECLARATIONS, PROBE, PROBE], CONTRACT)


@pytest.mark.parametrize(
    "part",
    [f.name for f in dataclasses.fields(Declaration) if f.name not in OPTIONAL_PARTS],
)
def test_a_declaration_without_a_part_stops_start_up(part: str) -> None:
    missing: dict[str, Any] = {part: None}  # as a declaration written without it
    incomplete = dataclasses.replace(PROBE, **missing)
    with pytest.raises(CatalogError, match=f"lacks its {part}"):
        Catalog([*DECLARATIONS, incomplete], CONTRACT)


def test_a_contract_type_without_a_declaration_stops_start_up() -> None:
    with pytest.raises(CatalogError, match=f"no declaration for: {re.escape(PROBE_TYPE)}"):
        Catalog(DECLARATIONS, CONTRACT)
    with pytest.raises(CatalogError, match=r"no declaration for: odoo\.fleet\.reconcile\.v1"):
        Catalog(DECLARATIONS[:-1], COMMAND_MODELS)


def test_a_type_outside_the_contract_stops_start_up() -> None:
    with pytest.raises(
        CatalogError, match=f"{re.escape(PROBE_TYPE)} is not a command model of the contract"
    ):
        Catalog([*DECLARATIONS, PROBE], COMMAND_MODELS)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"transition": None}, "about one instance but declares no transition"),
        ({"healthy_within": None}, "opens an operation: it states both its transition"),
        ({"locks": False}, "change an instance's status without holding it"),
        ({"event": ProbeCommand}, "is not an event model"),
        ({"queue": "quick"}, "is not one of"),
    ],
)
def test_parts_that_contradict_each_other_stop_start_up(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(CatalogError, match=message):
        Catalog([*DECLARATIONS, dataclasses.replace(PROBE, **changes)], CONTRACT)


def test_the_service_declares_every_contract_type_once_on_its_queue() -> None:
    catalog = command_catalog()
    assert set(catalog.types) == set(COMMAND_MODELS)
    assert catalog.routed_to(Queue.LONG) == {
        "odoo.instance.provision.v1",
        "odoo.instance.backup.v1",
        "odoo.instance.restore.v1",
        "odoo.instance.upgrade.v1",
        "odoo.instance.delete.v1",
        "odoo.instance.clone.v1",
        "odoo.instance.import.v1",
        "odoo.instance.domain.add.v1",
        "odoo.fleet.reconcile.v1",
    }
    assert catalog.routed_to(Queue.QUICK) == set(COMMAND_MODELS) - catalog.routed_to(Queue.LONG)
    assert catalog.status_machine.transitions.keys() == set(COMMAND_MODELS) - {
        "odoo.fleet.reconcile.v1"
    }
    assert not catalog.status_machine.holds_instance("odoo.fleet.reconcile.v1")


def test_no_handler_checks_the_type_of_its_command() -> None:
    guards = [
        f"{path.name}:{number}"
        for path in sorted((ROOT / "handlers").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"isinstance\(command\b", line)
    ]
    assert guards == []
