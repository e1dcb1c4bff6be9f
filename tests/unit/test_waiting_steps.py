"""Waiting steps where the consumer parks: one look, then a Wait naming what is awaited; the
resumed delivery goes on from there. With fakes of our own Cluster port, whose objects carry the
state the steps' own predicates read (a Deployment's rollout counts, a Job's conditions)."""

import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from handlers.progress import Progress
from handlers.results import Completed, Continue, HandlerContext, Wait
from handlers.steps import Step, StepOutcome, run_steps
from handlers.waits import WaitingFor
from k8s.apply import rolled_out
from k8s.kinds import DEPLOYMENT, JOB, Kind
from k8s.names import InstanceNames
from messages.commands import InstanceCommand
from messages.errors import PermanentError
from store.ledger import Ledger
from tests.unit.test_handlers import (
    INSTANCE,
    PROVISION,
    FakeCluster,
    FakeDatabases,
    _command,
    _existing_instance,
    _platform,
    _run,
    ledger,
)

__all__ = ["ledger"]  # the fixture, shared with test_handlers

NAMES = InstanceNames(INSTANCE)


@dataclass
class LookedAtCluster(FakeCluster):
    """FakeCluster whose objects answer a look (`get`) as the cluster would: a Deployment
    rolled out and a Job finished when `ready(kind, name)` says so; a deleted object stays
    until `ready` says it is gone."""

    deleted: set[tuple[str, str]] = field(default_factory=set)

    def get(self, kind: Kind[Any], name: str) -> Any | None:
        found = super().get(kind, name)
        if (kind.name, name) in self.deleted:
            return None if self.ready(kind.name, name) else found
        if found is None or kind.name not in ("Deployment", "Job"):
            return found
        done = self.ready(kind.name, name)
        if kind.name == "Job":
            conditions = [SimpleNamespace(type="Complete", status="True")] if done else []
            return SimpleNamespace(
                metadata=SimpleNamespace(
                    uid="uid-Job", annotations=found.manifest["metadata"].get("annotations")
                ),
                status=SimpleNamespace(conditions=conditions, succeeded=int(done), failed=0),
            )
        pods = 1 if done else 0
        counts = dict.fromkeys(("replicas", "ready_replicas", "available_replicas"), pods)
        return SimpleNamespace(
            metadata=SimpleNamespace(generation=2, uid="uid-Deployment"),
            spec=SimpleNamespace(replicas=1),
            status=SimpleNamespace(observed_generation=2, updated_replicas=pods, **counts),
        )

    def apply(self, kind: Kind[Any], manifest: dict[str, Any]) -> Any:
        super().apply(kind, manifest)
        name = manifest["metadata"]["name"]
        self.deleted.discard((kind.name, name))
        return self.get(kind, name)

    def delete(self, kind: Kind[object], name: str) -> None:
        self.calls.append(("delete", kind.name, name))
        self.deleted.add((kind.name, name))


def _parking(ledger: Ledger, command: Any, budget: float = 30.0) -> HandlerContext:
    admission = ledger.admit(command)
    operation_id = ledger.begin(command, admission)
    return HandlerContext(ledger, admission, operation_id, time.monotonic() + budget, parks=True)


def _resumed(context: HandlerContext, budget: float = 30.0) -> HandlerContext:
    deadline = time.monotonic() + budget
    return HandlerContext(
        context.ledger, context.admission, context.operation_id, deadline, parks=True
    )


def _watches(cluster: FakeCluster) -> list[tuple[str, ...]]:
    return [call for call in cluster.calls if call[0].startswith("wait")]


def test_a_provision_parks_on_its_init_job_then_on_its_rollout(ledger: Ledger) -> None:
    ready: set[str] = set()
    cluster = LookedAtCluster(ready=lambda kind, name: kind in ready)
    platform = _platform(cluster, FakeDatabases())
    command = _command("provision", **PROVISION)
    context = _parking(ledger, command)
    first = _run(platform, command, context)
    assert isinstance(first, Wait)
    assert first.step == "waiting: initialise"
    assert (first.waiting_for.kind, first.waiting_for.name) == (JOB, NAMES.init_job)
    assert time.time() < first.until <= time.time() + 30
    ready.add("Job")  # the event the lot resumes it on
    second = _run(platform, command, _resumed(context))
    assert isinstance(second, Wait)
    assert second.step == "waiting: rollout"
    assert (second.waiting_for.kind, second.waiting_for.name) == (DEPLOYMENT, NAMES.base)
    ready.add("Deployment")
    third = _run(platform, command, _resumed(context, budget=3.6))  # a short health check
    assert isinstance(third, Continue)  # on to the health check, which asks over HTTP
    assert third.step == "waiting: health"
    assert _watches(cluster) == []  # looked, never watched: no thread was held
    steps = ledger.operation(str(context.operation_id)).result["steps"]
    assert steps[-3:] == ["initialise", "deployment", "rollout"]
    applied = [call[1] for call in cluster.calls if call[0] == "apply"]
    assert applied.count("Job") == 1  # the resumed provision found its Job


def test_a_rollout_parked_past_its_deadline_fails_as_it_always_has(ledger: Ledger) -> None:
    cluster = LookedAtCluster(ready=lambda kind, name: kind == "Job")
    platform = _platform(cluster, FakeDatabases(), ready_deadline_seconds=120)
    command = _command("provision", **PROVISION)
    context = _parking(ledger, command)
    assert isinstance(_run(platform, command, context), Wait)
    operation_id = str(context.operation_id)
    ledger.advance(operation_id, "waiting: rollout", rollout_since=time.time() - 121)
    with pytest.raises(PermanentError) as failure:
        _run(platform, command, _resumed(context))
    assert failure.value.code == "not_ready"
    assert "did not have 1 Ready pod(s) within 120 s: no pod exists" in str(failure.value)


def test_a_parked_wait_whose_budget_is_spent_continues_through_the_delay_queues(
    ledger: Ledger,
) -> None:
    cluster = LookedAtCluster(ready=lambda kind, name: kind == "Job")
    platform = _platform(cluster, FakeDatabases())
    command = _command("provision", **PROVISION)
    context = _parking(ledger, command)
    assert isinstance(_run(platform, command, context), Wait)
    # Resumed by its `until`: the budget of its first decision is spent (the margin is kept).
    spent = _run(platform, command, _resumed(context, budget=1.0))
    assert isinstance(spent, Continue)
    assert spent.step == "waiting: rollout"


def test_a_delete_parks_until_its_deployment_is_gone(ledger: Ledger) -> None:
    _existing_instance(ledger)
    gone: set[str] = set()
    cluster = LookedAtCluster(ready=lambda kind, name: kind in gone)
    cluster.stored[("Deployment", NAMES.base)] = SimpleNamespace()
    platform = _platform(cluster, FakeDatabases())
    delete = _command("delete", final_backup=False, keep_data=True)
    context = _parking(ledger, delete)
    waiting = _run(platform, delete, context)
    assert isinstance(waiting, Wait)
    assert waiting.step == "waiting: workload-gone"
    assert waiting.waiting_for == WaitingFor.gone(
        DEPLOYMENT, NAMES.base, waiting.waiting_for.description
    )
    gone.add("Deployment")
    done = _run(platform, delete, _resumed(context))
    assert isinstance(done, Completed)
    assert done.event.type == "odoo.instance.deleted.v1"
    assert _watches(cluster) == []


def test_run_steps_returns_the_wait_and_records_nothing_for_its_step(ledger: Ledger) -> None:
    command = _command("provision", **PROVISION)
    assert isinstance(command, InstanceCommand)
    context = _parking(ledger, command)
    cluster = LookedAtCluster(ready=lambda kind, name: False)
    cluster.stored[("Deployment", "d")] = SimpleNamespace()
    awaited = WaitingFor.state(DEPLOYMENT, "d", rolled_out(1), "d rolled out")
    ran: list[str] = []

    def step(name: str, waits: bool) -> Step:
        def run(progress: Progress) -> StepOutcome:
            ran.append(name)
            return progress.wait(name, awaited) if waits else None

        return Step(name, run)

    steps = (step("a", waits=False), step("b", waits=True), step("c", waits=False))
    progress = Progress(command, context, _platform(cluster, FakeDatabases()).faults, cluster)
    waiting = run_steps(steps, progress)
    assert isinstance(waiting, Wait)
    assert waiting.waiting_for is awaited
    assert waiting.continued() == Continue(waiting.step, waiting.after_seconds, waiting.result)
    assert ran == ["a", "b"]
    assert ledger.operation(str(context.operation_id)).result["steps"] == ["a"]
    assert cluster.requests == Counter()  # the fake counts none; the look was a get
    assert ("get", "Deployment", "d") in cluster.calls
