"""Reading the state of Kubernetes objects: finished Jobs, and why pods are not Ready.

Kept apart from the appliers so the handlers' error messages name the actual reason (an image
that cannot be pulled, a container that crashes, a probe that fails) instead of "timed out".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from k8s.kinds import name_of

if TYPE_CHECKING:
    from kubernetes.client import V1Job, V1Pod


def job_outcome(job: V1Job) -> str | None:
    """ "Complete" or "Failed" once a Job has finished; None while it runs."""
    for condition in getattr(job.status, "conditions", None) or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return None


def job_failure(job: V1Job) -> str:
    """Why a Job failed, from its Failed condition."""
    for condition in getattr(job.status, "conditions", None) or []:
        if condition.type == "Failed" and condition.status == "True":
            return f"{condition.reason or 'Failed'}: {condition.message or 'no message'}"
    return "no Failed condition"


def pod_problems(pods: list[V1Pod]) -> str:
    """One line per pod: its phase and whatever keeps it from being Ready."""
    if not pods:
        return "no pod exists (check the ReplicaSet's events: quota, admission, scheduling)"
    lines = []
    for pod in pods:
        status = pod.status
        reasons = []
        for condition in getattr(status, "conditions", None) or []:
            if condition.type in ("PodScheduled", "Ready") and condition.status != "True":
                detail = condition.reason or "not true"
                if condition.message:
                    detail += f" ({condition.message})"
                reasons.append(f"{condition.type}={condition.status}: {detail}")
        for container in getattr(status, "container_statuses", None) or []:
            waiting = container.state.waiting if container.state else None
            if waiting is not None:
                reasons.append(f"container {container.name} waiting: {waiting.reason}")
            elif not container.ready:
                reasons.append(f"container {container.name} running but not ready")
        phase = getattr(status, "phase", None) or "Unknown"
        lines.append(f"pod {name_of(pod)}: {phase}; " + ("; ".join(reasons) or "no reason"))
    return " | ".join(lines)
