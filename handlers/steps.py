"""An operation's steps as data: a handler lists them; running, recording and skipping is done here.

A handler says what its operation does as an ordered list. A `Step` has a name (what the
operation records in `result.steps`, what fault tests stop at and the watchdog reports) and a
function that does its effects and returns what to keep with it, or `Continue` or `Wait` to wait
longer (`Progress.wait` says which). A
`Check` between steps looks at what is recorded and raises to end the command (a Job that
failed); it records nothing and runs whenever it is reached, a resumption included.

`run_steps` goes through the list in order: a step recorded as done is skipped, one whose
condition on the noted values does not hold is passed over, any other runs and is recorded (with
the faults hook and its span: `Progress.complete`). The first `Continue` or `Wait` stops the list;
the continuation (or the parked delivery, resumed) runs the same list again and so starts at the
first step not yet recorded. No
handler records a step by hand, so none can forget to, or record one twice.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from handlers.progress import Progress
from handlers.results import Continue, Wait

Noted = Mapping[str, Any]
StepOutcome = Noted | Continue | Wait | None
"""What a step's run returns: notes to record with it (None: nothing), or Continue or Wait to
wait (the step is not done, and what it waits for does not hold now)."""


def always(_noted: Noted) -> bool:
    """The condition of a step that always runs."""
    return True


@dataclass(frozen=True)
class Step:
    """One idempotent step: recorded under `name` once `run` has done its effects."""

    name: str
    run: Callable[[Progress], StepOutcome]
    when: Callable[[Noted], bool] = always
    """Whether the step runs at all, asked of the values noted by the steps before it."""

    def only_if(self, condition: Callable[[Noted], bool]) -> "Step":
        """The same step, run only when `condition` holds of what is noted when it is reached."""
        return replace(self, when=condition)


@dataclass(frozen=True)
class Check:
    """Between steps: decides from what is recorded whether the operation goes on (or raises)."""

    run: Callable[[Progress], None]


def run_steps(steps: Iterable[Step | Check], progress: Progress) -> Continue | Wait | None:
    """Run the steps not yet recorded, in order, recording each; a Continue or Wait to wait."""
    for step in steps:
        if isinstance(step, Check):
            step.run(progress)
        elif not progress.done(step.name) and step.when(progress.noted):
            outcome = step.run(progress)
            if isinstance(outcome, Continue | Wait):
                return outcome
            progress.complete(step.name, **(outcome or {}))
    return None
