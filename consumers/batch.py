"""Many deliveries decided together, so that one round trip or transaction of the store serves
them all (issue 18): the lock statement, the inbox read, admission and recording are each done
once per batch; the handlers run one after another in between, as they would alone.

Per delivery, in input order, the answer is the one it would get decided alone
(consumers/processing.py says which): a hop of a long delay goes on, a refused message is
answered, a command already answered is answered again from the inbox; a command whose instance
is held (by another process, or by an earlier command of the same batch: a duplicate, or a
second command of one instance) is retried as busy; the others are admitted and run.

The inbox is read twice, once per batch each time: before the locks, so that a redelivery is
answered without taking one, and again under them for the commands that got theirs. The second
read is what correctness rests on: between the first and the lock, another holder of the key
may have recorded the command's outcome and let the key go; admitted again, the command would
repeat its side effects and open an operation that its recording (which keeps the first
outcome) never closes. What
admission refuses, what handlers complete and what fails is recorded in one transaction at the
end, before any lock is released and before any answer leaves; with a `Handover` its events are
written claimed by the publisher and handed to it at once, so no claim query is needed. A store
failure in a shared step escapes the whole batch (nothing of that step is written; the runtime
retries each delivery).

Each delivery keeps its own trace: its span is current during the steps that are its alone,
and the shared steps run in the span of the first delivery that takes part in them.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from consumers.answers import Answer, answered_before
from consumers.delivery import DeadLetter, Decision, Delivery, Retry
from consumers.headers import Counters
from consumers.observed import Observation, command_type_of
from messages.commands import AnyCommand
from messages.errors import MessageRejected
from store.ledger import Started
from store.locks import InstanceBusyError
from store.outbox import Claim, PendingEvent

if TYPE_CHECKING:
    from consumers.processing import Processor

DUE_WITHIN_SECONDS = 0.5
"""A delayed message this close to its not-before runs now."""


@dataclass(frozen=True)
class Handover:
    """Where the events a batch records go at once: written claimed by `claim.holder` and
    handed to `publish` before the batch's locks are released (so one instance's events keep
    their order); `kick` asks the relay to claim what was written unclaimed (a refusal's
    answer). The runtime sets it (consumers/prompt_relay.py publishes)."""

    claim: Claim
    publish: Callable[[list[PendingEvent]], None]
    kick: Callable[[], None]


@dataclass
class _Item:
    """One delivery of the batch on its way to a decision."""

    delivery: Delivery
    counters: Counters
    observation: Observation
    command: AnyCommand | None = None
    key: str | None = None
    """The lock key it holds (None: none)."""
    answer: Answer | None = None


def decide_batch(processor: "Processor", deliveries: Sequence[Delivery]) -> list[Decision]:
    """The decisions about `deliveries`, in their order (the module's docstring says how)."""
    items: list[_Item] = []
    with ExitStack() as stack:
        for delivery in deliveries:
            counters = delivery.counters()
            wait = counters.wait_seconds()
            parsed = delivery.parse(processor.contract) if wait <= DUE_WITHIN_SECONDS else None
            item = _Item(delivery, counters, processor.observe.delivery(delivery, parsed))
            stack.callback(_end, item)
            items.append(item)
            if parsed is None:  # a long delay travels in hops through the longest delay queue
                item.answer = Answer(Retry(wait, "not due yet", counters, "not_due"))
            elif isinstance(parsed, MessageRejected):
                with item.observation.within():
                    item.answer = Answer(processor.refuse(delivery, parsed, counters))
            else:
                item.command = parsed
        commands = [item for item in items if item.command is not None]
        if commands:
            _decide_commands(processor, commands)
    return [_decision(item) for item in items]


def _decide_commands(processor: "Processor", items: list[_Item]) -> None:
    """Answer, lock, admit, run and record the batch's commands; release their locks once
    the outcomes are recorded."""
    ledger = processor.ledger
    _answer_from_inbox(processor, items)
    waiting = [item for item in items if item.answer is None]
    if not waiting:
        return
    keys = {id(item): ledger.lock_key(_command(item)) for item in waiting}
    with _within(waiting):
        held = ledger.locks.take(keys.values())
    with held:
        owned: set[str] = set()
        for item in waiting:
            key = keys[id(item)]
            if key not in held.keys or key in owned:
                item.answer = Answer(processor.busy(InstanceBusyError(key), item.counters))
            else:
                owned.add(key)
                item.key = key
        # Asked again under the lock: another replica may have just finished it.
        holding = [item for item in waiting if item.key is not None]
        if holding:
            _answer_from_inbox(processor, holding)
        _start_and_run(processor, [item for item in holding if item.answer is None])
        _record(processor, items)


def _answer_from_inbox(processor: "Processor", items: list[_Item]) -> None:
    """Answer the commands that have an outcome already, in one query."""
    with _within(items):
        stored = processor.ledger.outcomes_of([_command(item).id for item in items])
    for item in items:
        answered = stored.get(_command(item).id)
        if answered is not None:
            item.answer = Answer(answered_before(answered))


def _start_and_run(processor: "Processor", items: list[_Item]) -> None:
    """Admit and begin the commands that hold their keys, in one transaction, and run each."""
    starting: list[_Item] = []
    for item in items:
        with item.observation.within():
            item.answer = processor.exhausted(_command(item), item.delivery)
        if item.answer is None:
            starting.append(item)
    if not starting:
        return
    with _within(starting):
        results = processor.ledger.start_many([_command(item) for item in starting])
    for item, result in zip(starting, results, strict=True):
        command = _command(item)
        with item.observation.within():
            if isinstance(result, Started):
                item.answer = processor.run(command, item.delivery, item.counters, result)
            elif isinstance(result, MessageRejected):
                item.answer = processor.rejected(command, result)
            else:
                item.answer = Answer(processor.busy(result, item.counters))


def _record(processor: "Processor", items: list[_Item]) -> None:
    """Record every outcome the batch reached in one transaction, then tell about each."""
    recording = [item for item in items if item.answer is not None and item.answer.record]
    records = [record for item in recording if (record := _answer(item).record) is not None]
    if not records:
        return
    handover = processor.handover
    with _within(recording):
        recorded = processor.ledger.record_many(
            records, claim=handover.claim if handover is not None else None
        )
    if handover is not None:
        handover.publish([event for answer in recorded for event in answer.events])
    for item in recording:
        with item.observation.within():
            _answer(item).told()


@contextmanager
def _within(items: list[_Item]) -> Iterator[None]:
    """A shared step runs in the span of the first delivery that takes part."""
    with items[0].observation.within():
        yield


def _decision(item: _Item) -> Decision:
    decision = _answer(item).decision
    if isinstance(decision, Retry | DeadLetter):
        decision = replace(decision, command_type=command_type_of(item.observation.parsed))
    return decision


def _end(item: _Item) -> None:
    item.observation.ends(item.answer.decision if item.answer is not None else None)


def _command(item: _Item) -> AnyCommand:
    if item.command is None:
        raise RuntimeError("not a command")
    return item.command


def _answer(item: _Item) -> Answer:
    if item.answer is None:
        raise RuntimeError("no answer reached")
    return item.answer
