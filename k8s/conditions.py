"""Reading the state of Kubernetes objects: finished Jobs, and why pods are not Ready.

Kept apart from the appliers so the handlers' error messages name the actual reason (an image
that cannot be pulled, a container that crashes, a probe that fails) instead of "timed out".
"""

from typing import Any


def job_outcome(job: Any) -> str | None:
    """ "Complete" or "Failed" once a Job has finished; None while it runs."""
    for condition in getattr(job.status, "conditions", None) or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return None


def job_failure(job: Any) -> str:
    """Why a Job failed, from its Failed condition."""
    for condition in getattr(job.status, "conditions", None) or []:
        if condition.type == "Failed" and condition.status == "True":
            return f"{condition.reason or 'Failed'}: {condition.message or 'no message'}"
    return "no Failed condition"


def pod_problems(pods: list[Any]) -> str:
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
        lines.append(f"pod {pod.metadata.name}: {phase}; " + ("; ".join(reasons) or "no reason"))
    return " | ".join(lines)
