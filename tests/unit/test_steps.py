"""Steps as data: run_steps records, skips, waits and resumes; no handler records a step itself.

The store is a real SQLite file, so what is recorded is what the consumer and the watchdog read.
"""

import ast
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from handlers.progress import Progress
from handlers.results import Continue, HandlerContext
from handlers.steps import Check, Step, StepOutcome, run_steps
from messages.commands import ProvisionCommand
from messages.parsing import parse_command
from messages.publishing import build_command
from messages.settings import ContractSettings
from store.database import create_engine
from store.ledger import Ledger
from store.migrate import upgrade
from store.settings import StoreSettings
from tests.catalog import MACHINE

ROOT = Path(__file__).parents[2]
INSTANCE = "6f1c2b9e-3d4a-4e5f-8a7b-9c0d1e2f3a4b"


class NoCluster:
    """Progress only counts the requests of its cluster view."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()


class Reached:
    """A faults hook that remembers where it was called, and may crash at one step."""

    def __init__(self, crash_at: str | None = None) -> None:
        self.steps: list[str] = []
        self.crash_at = crash_at

    def reached(self, command_type: str, step: str) -> None:
        self.steps.append(step)
        if step == self.crash_at:
            raise KeyboardInterrupt  # a BaseException, as the fault tests' crash is


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    engine = create_engine(StoreSettings(url=SecretStr(f"sqlite:///{tmp_path / 's.db'}")))
    upgrade(engine)
    yield Ledger(engine, MACHINE)
    engine.dispose()


@pytest.fixture
def command() -> ProvisionCommand:
    message = build_command(
        "odoo.instance.provision.v1",
        {
            "instance_id": INSTANCE,
            "customer_id": "cus_1",
            "subdomain": "acme",
            "odoo_version": "17.0",
            "plan": {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 5},
            "admin_email": "owner@acme.example",
        },
        source="/t",
    )
    parsed = parse_command(message.body, message.properties, ContractSettings())
    assert isinstance(parsed, ProvisionCommand)
    return parsed


@pytest.fixture
def context(ledger: Ledger, command: ProvisionCommand) -> HandlerContext:
    admission = ledger.admit(command)
    operation_id = ledger.begin(command, admission)
    return HandlerContext(ledger, admission, operation_id, time.monotonic() + 30)


def _progress(
    command: ProvisionCommand, context: HandlerContext, faults: Reached | None = None
) -> Progress:
    """A fresh view of the operation, as each delivery of the command builds one."""
    return Progress(command, context, faults or Reached(), NoCluster())  # type: ignore[arg-type]


class Effects:
    """Step functions that log each run; `waits` makes one step return Continue."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.waits: set[str] = set()

    def step(self, name: str, **notes: Any) -> Step:
        def run(progress: Progress) -> StepOutcome:
            self.ran.append(name)
            if name in self.waits:
                return progress.pause(name)
            return notes

        return Step(name, run)


def _recorded(context: HandlerContext) -> dict[str, Any]:
    return dict(context.ledger.operation(str(context.operation_id)).result)


def test_steps_run_in_order_once_each_and_are_recorded_with_their_notes(
    command: ProvisionCommand, context: HandlerContext
) -> None:
    effects, faults = Effects(), Reached()
    steps = (effects.step("a"), effects.step("b", replicas=2), effects.step("c"))
    assert run_steps(steps, _progress(command, context, faults)) is None
    assert effects.ran == faults.steps == ["a", "b", "c"]
    recorded = _recorded(context)
    assert recorded["steps"] == ["a", "b", "c"]
    assert recorded["replicas"] == 2
    assert run_steps(steps, _progress(command, context)) is None
    assert effects.ran == ["a", "b", "c"]  # all recorded: nothing runs again


def test_a_waiting_step_stops_the_list_and_its_continuation_resumes_there(
    command: ProvisionCommand, context: HandlerContext
) -> None:
    effects = Effects()
    effects.waits = {"b"}
    steps = (effects.step("a"), effects.step("b"), effects.step("c"))
    waiting = run_steps(steps, _progress(command, context))
    assert isinstance(waiting, Continue)
    assert waiting.step == "waiting: b"
    assert _recorded(context)["steps"] == ["a"]
    effects.waits = set()
    assert run_steps(steps, _progress(command, context)) is None
    assert effects.ran == ["a", "b", "b", "c"]
    assert _recorded(context)["steps"] == ["a", "b", "c"]


def test_a_step_interrupted_before_its_record_runs_again_and_only_it(
    command: ProvisionCommand, context: HandlerContext
) -> None:
    effects = Effects()
    steps = (effects.step("a"), effects.step("b"), effects.step("c"))
    with pytest.raises(KeyboardInterrupt):
        run_steps(steps, _progress(command, context, Reached(crash_at="b")))
    assert _recorded(context)["steps"] == ["a"]
    assert run_steps(steps, _progress(command, context)) is None
    assert effects.ran == ["a", "b", "b", "c"]


def test_a_step_runs_only_if_its_condition_holds_of_what_is_noted_when_reached(
    command: ProvisionCommand, context: HandlerContext
) -> None:
    effects = Effects()

    def running(noted: Any) -> bool:
        return not noted.get("absent")

    steps = (effects.step("scale", absent=True), effects.step("rollout").only_if(running))
    assert run_steps(steps, _progress(command, context)) is None
    assert effects.ran == ["scale"]
    assert _recorded(context)["steps"] == ["scale"]


def test_a_check_runs_whenever_it_is_reached_and_raising_stops_what_follows(
    command: ProvisionCommand, context: HandlerContext
) -> None:
    effects, checked = Effects(), []

    def job_failed(progress: Progress) -> None:
        checked.append(progress.noted["job"])
        raise RuntimeError("the Job failed")

    steps = (effects.step("job", job="failed"), Check(job_failed), effects.step("after"))
    for _ in range(2):  # a redelivery reads the recorded end and decides again
        with pytest.raises(RuntimeError):
            run_steps(steps, _progress(command, context))
    assert effects.ran == ["job"]
    assert checked == ["failed", "failed"]
    assert _recorded(context)["steps"] == ["job"]


def _records_by_hand(path: Path) -> list[int]:
    """Lines that call `.done(...)` or `.complete(...)` (Progress's record) in a module."""
    tree = ast.parse(path.read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"done", "complete"}
    ]


def test_no_handler_records_or_skips_a_step_by_hand() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "handlers").glob("*.py"))
        if path.name != "steps.py"
        for line in _records_by_hand(path)
    ]
    assert offenders == []
    assert _records_by_hand(ROOT / "handlers" / "steps.py")  # the scan does find them
