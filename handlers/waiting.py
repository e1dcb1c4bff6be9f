"""The waiting steps of lifecycle operations: a rollout to N ready pods, a passing health check.

Each is a `Step` (handlers/steps.py), recorded once its wait is over. Both wait within the
handler budget (watching, or asking over HTTP) and hand over to a continuation when the budget
runs out; both end the command with a precise error once their own deadline, counted from the
first time the operation waited, has passed.
"""

import time
from collections.abc import Callable

from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.steps import Step, StepOutcome
from k8s.apply import WaitTimeoutError, rolled_out
from k8s.conditions import pod_problems
from k8s.health import check_health
from k8s.kinds import DEPLOYMENT, POD
from k8s.spec import InstanceSpec
from messages.errors import PermanentError
from store.records import READY_AT_KEY

REQUEST_TIMEOUT_SECONDS = 5.0


def selector_of(spec: InstanceSpec) -> str:
    """The label selector of the instance's server pods."""
    return ",".join(f"{key}={value}" for key, value in spec.selector().items())


def rollout(
    step: str, replicas: int, spec: InstanceSpec, platform: Platform, cluster: Cluster
) -> Step:
    """Wait until the Deployment runs `replicas` ready pods of its current template."""
    name, namespace = spec.names.base, platform.namespace
    deadline = platform.kubernetes.ready_deadline_seconds

    def wait(progress: Progress, window: float, until: float) -> None:
        cluster.wait_for(DEPLOYMENT, name, rolled_out(replicas), window)
        if replicas == 0:
            # The status counts zero while pods are still terminating: wait for them to go,
            # so nothing writes to the data when a restore or an upgrade follows.
            left = max(progress.window(until), 1.0)
            cluster.wait_none(POD, selector=selector_of(spec), deadline_seconds=left)

    def expired() -> PermanentError:
        pods = cluster.objects(POD, selector=selector_of(spec))
        if replicas == 0:
            return PermanentError(
                "not_stopped",
                f"Deployment {namespace}/{name} still has pods after {deadline:g} s: "
                f"{pod_problems(pods)}",
            )
        return PermanentError(
            "not_ready",
            f"Deployment {namespace}/{name} did not have {replicas} Ready pod(s) within "
            f"{deadline:g} s: {pod_problems(pods)}",
        )

    def ready() -> dict[str, float]:
        # When the pods were seen Ready: the Ready-to-event latency is measured from here.
        return {READY_AT_KEY: time.time()} if replicas > 0 else {}

    return watch_step(step, deadline, wait, expired, ready)


def watch_step(
    step: str,
    deadline: float,
    wait: Callable[[Progress, float, float], None],
    expired: Callable[[], PermanentError],
    notes: Callable[[], dict[str, float]] = dict,
) -> Step:
    """A step that waits, by watching, for at most `deadline` seconds from its first try.

    `wait(progress, window, until)` watches for up to `window` seconds (raising
    WaitTimeoutError); `until` is the epoch time the deadline ends. Within the handler budget it
    waits, then hands over to a continuation; once the deadline has passed (a continuation may
    come late) it still takes one last look before failing with `expired()`. `notes()` is
    recorded with the step when it completes.
    """

    def run(progress: Progress) -> StepOutcome:
        since = progress.since(step)
        until = since + deadline
        try:
            wait(progress, max(progress.window(until), 1.0), until)
        except WaitTimeoutError:
            pass
        else:
            return notes()
        if time.time() < until:
            return progress.pause(step)
        raise expired()

    return Step(step, run)


def health(step: str, spec: InstanceSpec, platform: Platform) -> Step:
    """Wait until GET <service>/web/health answers 200 with status pass."""
    deadline = platform.kubernetes.health_deadline_seconds
    url = spec.names.internal_url(platform.namespace)

    def run(progress: Progress) -> StepOutcome:
        since = progress.since(step)
        window = max(0.0, progress.window(since + deadline))
        result = check_health(
            url,
            platform.resolver,
            request_timeout=min(REQUEST_TIMEOUT_SECONDS, max(window, 1.0)),
            deadline_seconds=window,
        )
        if result.healthy:
            return None
        if time.time() - since < deadline:
            return progress.pause(step)
        raise PermanentError(
            "unhealthy", f"{url}/web/health did not pass within {deadline:g} s: {result.detail}"
        )

    return Step(step, run)
