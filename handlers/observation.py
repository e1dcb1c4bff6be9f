"""What the watcher concludes from an instance's Deployment and pods, and which status change
that allows. Pure: objects in, verdicts out; the watcher supplies both and records the result.

An instance is healthy when its Deployment has as many Ready server pods as it wants. It is
unhealthy since the moment the first of its pods stopped being Ready (the Ready condition's
`lastTransitionTime`, so a watcher that restarts or relists measures from the same moment).
When the objects carry no such moment (the Deployment missing or scaled to 0, no pod, a pod
without a Ready condition) `since` is None and the watcher counts from when it first saw the
instance so. A pod that keeps crashing is not Ready most of the time, and `CrashLoopBackOff` is
named in the reason.

Only `running` and `degraded` are the watcher's to change, and only between themselves:
running -> degraded after `threshold` seconds unhealthy, degraded -> running once healthy.
Every other status belongs to an operation in progress or to billing (suspended, terminated,
deleting, ...) and is never touched.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from store.lifecycle import InstanceStatus

S = InstanceStatus


@dataclass(frozen=True)
class Observed:
    """An instance's health as the cluster shows it."""

    healthy: bool
    since: datetime | None = None
    """When it became unhealthy (None when healthy, or when the objects do not say)."""
    reason: str = ""


@dataclass(frozen=True)
class Transition:
    """A status change the watcher should record."""

    from_: InstanceStatus
    to: InstanceStatus
    reason: str


def observe(deployment: dict[str, Any] | None, pods: list[dict[str, Any]]) -> Observed:
    """The health of one instance from its Deployment and server pods (JSON objects)."""
    if deployment is None:
        return Observed(False, None, "its Deployment is missing")
    wanted = int(deployment.get("spec", {}).get("replicas") or 0)
    if wanted < 1:
        return Observed(False, None, "its Deployment is scaled to 0")
    live = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
    ready = [pod for pod in live if _ready(pod)[0]]
    if len(ready) >= wanted:
        return Observed(True)
    since: datetime | None = None
    problems: list[str] = []
    for pod in live:
        is_ready, changed = _ready(pod)
        if is_ready:
            continue
        since = changed if since is None or (changed is not None and changed < since) else since
        problems.append(f"pod {pod['metadata']['name']} {_why(pod)}")
    if not live:
        problems.append("no pod exists")
    return Observed(False, since, "; ".join(problems))


def decide(
    status: InstanceStatus | None, observed: Observed, now: datetime, threshold_seconds: float
) -> Transition | None:
    """The change `observed` calls for, or None (never for a status the watcher does not own)."""
    if status is S.RUNNING and not observed.healthy:
        since = observed.since or now  # the caller supplies the moment the objects lack
        if (now - since).total_seconds() >= threshold_seconds:
            return Transition(S.RUNNING, S.DEGRADED, observed.reason)
        return None
    if status is S.DEGRADED and observed.healthy:
        return Transition(S.DEGRADED, S.RUNNING, "all its pods are Ready again")
    return None


def due(observed: Observed, threshold_seconds: float) -> datetime | None:
    """When an unhealthy instance's threshold runs out (None when healthy)."""
    if observed.healthy or observed.since is None:
        return None
    return observed.since + timedelta(seconds=threshold_seconds)


def _ready(pod: dict[str, Any]) -> tuple[bool, datetime | None]:
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            changed = condition.get("lastTransitionTime")
            when = datetime.fromisoformat(changed.replace("Z", "+00:00")) if changed else None
            return condition.get("status") == "True", when
    return False, None


def _why(pod: dict[str, Any]) -> str:
    status = pod.get("status", {})
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            restarts = container.get("restartCount", 0)
            return f"is {waiting['reason']} ({restarts} restarts)"
    phase = status.get("phase", "Pending")
    return f"is {phase}, not Ready"
