"""An operation's steps as recorded in the store: what is done, what was noted, what is next.

Every step records itself once its effects are done, so a continuation or a redelivery after a
crash skips it rather than repeating it. A step interrupted between its effects and its record
runs again, which is why every step is idempotent by itself (apply, scale to a number, ensure).
"""

import math
import time
from typing import Any

from opentelemetry import trace

from handlers.platform import Cluster, Faults
from handlers.results import Continue, HandlerContext, Wait
from handlers.waits import WaitingFor
from k8s.apply import WaitTimeoutError
from messages.commands import InstanceCommand

tracer = trace.get_tracer("instance_service.handlers")

STEPS_KEY = "steps"
REQUESTS_KEY = "kubernetes_requests"
CONTINUE_AFTER_SECONDS = 1.0
"""Pause between a handler that ran out of budget while waiting and its continuation."""
BUDGET_MARGIN_SECONDS = 3.0
"""Kept free of the handler budget for recording the outcome after a wait."""


class Progress:
    """The steps of one command's operation."""

    def __init__(
        self, command: InstanceCommand, context: HandlerContext, faults: Faults, cluster: Cluster
    ) -> None:
        if context.operation_id is None:
            raise RuntimeError(f"{command.type} runs without an operation")
        self._command_type = command.type
        self._context = context
        self._operation_id = context.operation_id
        self._faults = faults
        self._cluster = cluster
        record = context.ledger.operation(self._operation_id)
        self.noted: dict[str, Any] = dict(record.result)
        self._steps: list[str] = list(self.noted.get(STEPS_KEY, []))
        self._requests_before = int(self.noted.get(REQUESTS_KEY, 0))
        self._mark = time.time_ns()

    @property
    def operation_id(self) -> str:
        """The operation these steps belong to."""
        return self._operation_id

    def done(self, step: str) -> bool:
        """Whether `step` has been recorded as done."""
        return step in self._steps

    def complete(self, step: str, **notes: Any) -> None:
        """Record `step` as done, with anything worth keeping for later steps."""
        self._faults.reached(self._command_type, step)
        self._steps.append(step)
        self._record(step, **notes)
        # A span per step, from the end of the one before: a child of the handler's span.
        now = time.time_ns()
        span = tracer.start_span(f"step {step}", start_time=self._mark)
        span.set_attribute("instance_service.step", step)
        span.end(end_time=now)
        self._mark = now

    def note(self, **notes: Any) -> None:
        """Keep values for later steps or continuations without finishing a step."""
        self._record(self._steps[-1] if self._steps else "started", **notes)

    def since(self, step: str) -> float:
        """When waiting for `step` began (epoch seconds), noted the first time it is asked."""
        key = f"{step}_since"
        if key not in self.noted:
            self.note(**{key: time.time()})
        return float(self.noted[key])

    def window(self, overall_end: float) -> float:
        """Seconds this call may wait: to `overall_end` (epoch), within the handler budget."""
        return min(self._context.remaining() - BUDGET_MARGIN_SECONDS, overall_end - time.time())

    def pause(self, waiting_for: str) -> Continue:
        """Come back later to go on waiting for `waiting_for`."""
        return Continue(
            step=f"waiting: {waiting_for}",
            after_seconds=CONTINUE_AFTER_SECONDS,
            result={REQUESTS_KEY: self._requests()},
        )

    def wait(
        self, step: str, waiting_for: WaitingFor[Any], until: float = math.inf
    ) -> Continue | Wait | None:
        """Wait for what `step` waits for, until `until` (epoch), within the handler budget:
        None once it holds.

        Where the consumer parks (the context says so), one look (`holds_now`), then a Wait:
        the thread goes back and the delivery comes back when it happens. Otherwise watched
        here, as before parking existed. A Continue once the budget is spent first;
        WaitTimeoutError once `until` has passed (after a last look).
        """
        window = self.window(until)
        if self._context.parks:
            if waiting_for.holds_now(self._cluster):
                return None
            if time.time() >= until:
                raise WaitTimeoutError(f"{waiting_for.description}: not within its time", None)
            if window <= 0:
                return self.pause(step)
            return Wait(
                step=f"waiting: {step}",
                waiting_for=waiting_for,
                until=time.time() + window,
                after_seconds=CONTINUE_AFTER_SECONDS,
                result={REQUESTS_KEY: self._requests()},
            )
        if window <= 0 and time.time() < until:
            return self.pause(step)  # the budget is spent, not the wait's own time
        try:
            waiting_for.block(self._cluster, max(window, 1.0))
        except WaitTimeoutError:
            if time.time() >= until:
                raise
            return self.pause(step)
        return None

    def finish(self) -> None:
        """Every step is done; the outcome is about to be recorded."""
        self._faults.reached(self._command_type, "record")

    def _requests(self) -> int:
        return self._requests_before + sum(self._cluster.requests.values())

    def _record(self, step: str, **notes: Any) -> None:
        self.noted.update(notes)
        self._context.ledger.advance(
            self._operation_id,
            step,
            **notes,
            **{STEPS_KEY: list(self._steps), REQUESTS_KEY: self._requests()},
        )
