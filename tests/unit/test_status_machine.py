"""The status table in docs/status-machine.md is the code's table, pair by pair."""

import re
from pathlib import Path

import pytest

from store.lifecycle import (
    HOLD_STATUS,
    WORKING,
    Ending,
    Hold,
    InstanceStatus,
    Verdict,
    status_after,
)
from tests.catalog import MACHINE

# The service's status machine, as the declarations of its commands make it.
TRANSITIONS = MACHINE.transitions
decide, settle = MACHINE.decide, MACHINE.settle
hold_on_begin, lifted_by = MACHINE.hold_on_begin, MACHINE.lifted_by

DOC = Path(__file__).resolve().parents[2] / "docs" / "status-machine.md"
MARKS = {
    "run": Verdict.RUN,
    "wait": Verdict.WAIT,
    "—": Verdict.NOT_ALLOWED,
    "unknown": Verdict.UNKNOWN_INSTANCE,
}


def verb(command_type: str) -> str:
    """`odoo.instance.domain.add.v1` -> `domain.add`, as the tables name commands."""
    return command_type.removeprefix("odoo.instance.").removesuffix(".v1")


def _documented() -> dict[tuple[InstanceStatus | None, str], Verdict]:
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[0] == "status \\ command"
    commands = {verb(t): t for t in TRANSITIONS}
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


# -- billing holds: where every command leaves an instance, however it ends ------------------

ENDINGS = (Ending.SUCCEEDED, Ending.FAILED, Ending.ROLLED_BACK)
AFTER = """
status       command        succeeded   failed      rolled_back
-            provision      running     error       error
-            clone          running     error       error
-            import         running     error       error
running      start          running     error       running
running      stop           stopped     error       running
running      restart        running     error       running
running      suspend        suspended   suspended   suspended
running      unsuspend      running     error       running
running      resize         running     error       running
running      upgrade        running     error       running
running      backup         running     error       running
running      restore        running     error       running
running      terminate      terminated  terminated  terminated
running      delete         deleted     error       running
running      domain.add     running     error       running
running      domain.remove  running     error       running
degraded     start          running     error       degraded
degraded     stop           stopped     error       degraded
degraded     restart        running     error       degraded
degraded     suspend        suspended   suspended   suspended
degraded     unsuspend      running     error       degraded
degraded     resize         degraded    error       degraded
degraded     upgrade        degraded    error       degraded
degraded     backup         degraded    error       degraded
degraded     restore        degraded    error       degraded
degraded     terminate      terminated  terminated  terminated
degraded     delete         deleted     error       degraded
degraded     domain.add     degraded    error       degraded
degraded     domain.remove  degraded    error       degraded
stopped      start          running     error       stopped
stopped      stop           stopped     error       stopped
stopped      suspend        suspended   suspended   suspended
stopped      resize         stopped     error       stopped
stopped      upgrade        stopped     error       stopped
stopped      backup         stopped     error       stopped
stopped      restore        stopped     error       stopped
stopped      terminate      terminated  terminated  terminated
stopped      delete         deleted     error       stopped
stopped      domain.add     stopped     error       stopped
stopped      domain.remove  stopped     error       stopped
error        provision      running     error       error
error        clone          running     error       error
error        import         running     error       error
error        start          running     error       error
error        stop           stopped     error       error
error        restart        running     error       error
error        suspend        suspended   suspended   suspended
error        restore        running     error       error
error        terminate      terminated  terminated  terminated
error        delete         deleted     error       error
suspended    suspend        suspended   suspended   suspended
suspended    unsuspend      running     suspended   suspended
suspended    resize         suspended   suspended   suspended
suspended    backup         suspended   suspended   suspended
suspended    terminate      terminated  terminated  terminated
suspended    delete         deleted     suspended   suspended
suspended    domain.add     suspended   suspended   suspended
suspended    domain.remove  suspended   suspended   suspended
terminated   backup         terminated  terminated  terminated
terminated   terminate      terminated  terminated  terminated
terminated   reactivate     running     terminated  terminated
terminated   delete         deleted     terminated  terminated
terminated   domain.add     terminated  terminated  terminated
terminated   domain.remove  terminated  terminated  terminated
"""
"""Every command that runs in a status at rest, and where it leaves the instance as it succeeds,
fails or fails having rolled back; written out by hand, not computed. `suspended` and
`terminated` after a command mean held so; every other status, not held."""
HELD_IN = {InstanceStatus.SUSPENDED: Hold.SUSPENDED, InstanceStatus.TERMINATED: Hold.TERMINATED}


def _after_table() -> dict[tuple[InstanceStatus | None, str, Ending], InstanceStatus]:
    commands = {verb(t): t for t in TRANSITIONS}
    rows = [line.split() for line in AFTER.strip().splitlines()[1:]]
    return {
        (None if status == "-" else InstanceStatus(status), commands[verb], ending): (
            InstanceStatus(after)
        )
        for status, verb, *afters in rows
        for ending, after in zip(ENDINGS, afters, strict=True)
    }


EXPECTED_AFTER = _after_table()
AT_REST = [None, *(status for status in InstanceStatus if status not in WORKING)]
RUNS = [
    (status, command_type, ending)
    for status in AT_REST
    for command_type in TRANSITIONS
    if decide(status, command_type, HELD_IN.get(status) if status else None) is Verdict.RUN
    for ending in ENDINGS
]


def test_the_table_covers_every_command_that_runs_in_a_status_at_rest() -> None:
    assert set(EXPECTED_AFTER) == set(RUNS)


@pytest.mark.parametrize(("before", "command_type", "ending"), RUNS)
def test_where_a_command_leaves_the_instance(
    before: InstanceStatus | None, command_type: str, ending: Ending
) -> None:
    hold = HELD_IN.get(before) if before else None
    # Begun: the instance works, and keeps (or takes) its hold meanwhile.
    working = hold_on_begin(command_type, hold)
    assert working == (TRANSITIONS[command_type].takes or hold)
    rest = settle(command_type, before, working, ending)
    expected = EXPECTED_AFTER[(before, command_type, ending)]
    assert (rest.status, rest.hold) == (expected, HELD_IN.get(expected))
    # Settling from the hold before or after `begin` gives the same answer.
    assert settle(command_type, before, hold, ending) == rest


@pytest.mark.parametrize(("before", "command_type", "ending"), RUNS)
def test_no_path_leads_from_a_hold_to_serving_but_its_lifting(
    before: InstanceStatus | None, command_type: str, ending: Ending
) -> None:
    hold = HELD_IN.get(before) if before else None
    rest = settle(command_type, before, hold_on_begin(command_type, hold), ending)
    lifted = ending is Ending.SUCCEEDED and TRANSITIONS[command_type].lifts
    if hold is not None and not lifted:
        assert rest.hold is not None
        for serve in ("odoo.instance.start.v1", "odoo.instance.restart.v1"):
            assert decide(rest.status, serve, rest.hold) is Verdict.NOT_ALLOWED
    if ending is not Ending.SUCCEEDED:
        assert rest.hold == (TRANSITIONS[command_type].takes or hold)  # a failure lifts none


@pytest.mark.parametrize("hold", list(Hold))
@pytest.mark.parametrize("status", [InstanceStatus.ERROR, InstanceStatus.RUNNING])
def test_a_held_instance_is_judged_by_its_hold_whatever_its_status(
    hold: Hold, status: InstanceStatus
) -> None:
    held = HOLD_STATUS[hold]
    assert {t: decide(status, t, hold) for t in TRANSITIONS} == {
        t: decide(held, t) for t in TRANSITIONS
    }
    for working in WORKING:
        assert decide(working, "odoo.instance.start.v1", hold) is Verdict.WAIT


def test_the_commands_that_lift_a_hold() -> None:
    assert lifted_by(Hold.SUSPENDED) == ["odoo.instance.unsuspend.v1", "odoo.instance.delete.v1"]
    assert lifted_by(Hold.TERMINATED) == ["odoo.instance.reactivate.v1", "odoo.instance.delete.v1"]
