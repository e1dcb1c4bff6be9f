"""The watcher's verdicts from Deployments and pods, and the only changes it may make."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.observation import Observed, decide, due, observe
from store.lifecycle import InstanceStatus

S = InstanceStatus
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _deployment(replicas: int = 1) -> dict[str, Any]:
    return {"spec": {"replicas": replicas}}


def _pod(name: str, ready: bool, changed: datetime = NOW, **status: Any) -> dict[str, Any]:
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "lastTransitionTime": changed.isoformat().replace("+00:00", "Z"),
    }
    return {"metadata": {"name": name}, "status": {"conditions": [condition], **status}}


def test_enough_ready_pods_are_healthy() -> None:
    assert observe(_deployment(), [_pod("a", True)]) == Observed(True)


def test_unhealthy_since_the_pod_stopped_being_ready() -> None:
    earlier = NOW - timedelta(seconds=90)
    found = observe(_deployment(), [_pod("a", False, earlier)])
    assert not found.healthy
    assert found.since == earlier
    assert found.reason == "pod a is Pending, not Ready"


def test_a_crash_loop_is_named() -> None:
    waiting = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 7}
    found = observe(_deployment(), [_pod("a", False, containerStatuses=[waiting])])
    assert found.reason == "pod a is CrashLoopBackOff (7 restarts)"


@pytest.mark.parametrize(
    ("deployment", "pods", "reason"),
    [
        (None, [], "its Deployment is missing"),
        (_deployment(0), [], "its Deployment is scaled to 0"),
        (_deployment(1), [], "no pod exists"),
    ],
)
def test_missing_objects_are_unhealthy_since_an_unknown_moment(
    deployment: dict[str, Any] | None, pods: list[dict[str, Any]], reason: str
) -> None:
    found = observe(deployment, pods)
    assert found == Observed(False, None, reason)
    # The watcher counts from when it first saw it so; alone, it is not due yet.
    assert decide(S.RUNNING, found, NOW, 60) is None


def test_a_terminating_pod_does_not_count() -> None:
    leaving = _pod("old", True)
    leaving["metadata"]["deletionTimestamp"] = NOW.isoformat()
    assert not observe(_deployment(), [leaving]).healthy


def test_running_degrades_only_past_the_threshold() -> None:
    sick = Observed(False, NOW - timedelta(seconds=59), "pod a is Running, not Ready")
    assert decide(S.RUNNING, sick, NOW, 60) is None
    assert due(sick, 60) == NOW + timedelta(seconds=1)
    later = decide(S.RUNNING, sick, NOW + timedelta(seconds=1), 60)
    assert later is not None
    assert (later.from_, later.to, later.reason) == (S.RUNNING, S.DEGRADED, sick.reason)


def test_degraded_recovers_when_healthy_and_not_before() -> None:
    assert decide(S.DEGRADED, Observed(False, NOW, "x"), NOW, 60) is None
    back = decide(S.DEGRADED, Observed(True), NOW, 60)
    assert back is not None
    assert (back.from_, back.to) == (S.DEGRADED, S.RUNNING)
    assert decide(S.RUNNING, Observed(True), NOW, 60) is None
    assert due(Observed(True), 60) is None


@pytest.mark.parametrize(
    "status", [s for s in InstanceStatus if s not in (S.RUNNING, S.DEGRADED)] + [None]
)
def test_no_other_status_is_ever_changed(status: InstanceStatus | None) -> None:
    long_sick = Observed(False, NOW - timedelta(days=1), "gone")
    assert decide(status, long_sick, NOW, 60) is None
    assert decide(status, Observed(True), NOW, 60) is None
