"""The status table in docs/status-machine.md is the code's table, pair by pair."""

import re
from pathlib import Path

import pytest

from store.lifecycle import TRANSITIONS, WORKING, InstanceStatus, Verdict, decide, status_after

DOC = Path(__file__).resolve().parents[2] / "docs" / "status-machine.md"
MARKS = {
    "run": Verdict.RUN,
    "wait": Verdict.WAIT,
    "—": Verdict.NOT_ALLOWED,
    "unknown": Verdict.UNKNOWN_INSTANCE,
}


def _documented() -> dict[tuple[InstanceStatus | None, str], Verdict]:
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[0] == "status \\ command"
    commands = {t.split(".")[2]: t for t in TRANSITIONS}
    columns = [commands[name] for name in header[1:]]
    table: dict[tuple[InstanceStatus | None, str], Verdict] = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == "*(no instance)*":
            status: InstanceStatus | None = None
        elif match := re.fullmatch(r"`(\w+)`", cells[0]):
            if match.group(1) not in InstanceStatus.__members__.values():
                break  # the next table starts with commands
            status = InstanceStatus(match.group(1))
        else:
            continue
        for command_type, cell in zip(columns, cells[1:], strict=True):
            table[(status, command_type)] = MARKS[cell]
    return table


DOCUMENTED = _documented()
PAIRS = [(status, t) for status in [None, *InstanceStatus] for t in TRANSITIONS]


def test_the_document_covers_every_pair() -> None:
    assert set(DOCUMENTED) == set(PAIRS)


@pytest.mark.parametrize(("status", "command_type"), PAIRS)
def test_code_agrees_with_the_document(status: InstanceStatus | None, command_type: str) -> None:
    assert decide(status, command_type) is DOCUMENTED[(status, command_type)]


@pytest.mark.parametrize("status", sorted(WORKING))
def test_commands_wait_for_an_operation_in_progress(status: InstanceStatus) -> None:
    assert {decide(status, t) for t in TRANSITIONS} == {Verdict.WAIT}


def test_the_predecessors_defects_are_fixed() -> None:
    s = InstanceStatus
    assert decide(s.SUSPENDED, "odoo.instance.unsuspend.v1") is Verdict.RUN
    assert TRANSITIONS["odoo.instance.unsuspend.v1"].done is s.RUNNING
    assert decide(s.SUSPENDED, "odoo.instance.start.v1") is Verdict.NOT_ALLOWED
    assert TRANSITIONS["odoo.instance.terminate.v1"].done is s.TERMINATED
    assert decide(s.TERMINATED, "odoo.instance.backup.v1") is Verdict.RUN  # data is kept
    assert decide(s.TERMINATED, "odoo.instance.reactivate.v1") is Verdict.RUN
    assert TRANSITIONS["odoo.instance.reactivate.v1"].done is s.RUNNING
    assert decide(s.TERMINATED, "odoo.instance.start.v1") is Verdict.NOT_ALLOWED


def test_operations_that_keep_the_status_return_to_it() -> None:
    resize = TRANSITIONS["odoo.instance.resize.v1"]
    assert status_after(resize, InstanceStatus.STOPPED) is InstanceStatus.STOPPED
    assert status_after(resize, InstanceStatus.SUSPENDED) is InstanceStatus.SUSPENDED
    restore = TRANSITIONS["odoo.instance.restore.v1"]
    assert status_after(restore, InstanceStatus.ERROR) is InstanceStatus.RUNNING


def test_deleted_is_final() -> None:
    assert {decide(InstanceStatus.DELETED, t) for t in TRANSITIONS} == {Verdict.NOT_ALLOWED}
